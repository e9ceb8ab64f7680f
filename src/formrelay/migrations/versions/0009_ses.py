"""Amazon SES: the suppression list, SES's events, handled SNS messages, the shared send rate.

New tables only; nothing existing changes, so there is nothing to backfill: an address is
suppressed from its first permanent bounce or complaint reported after this revision (or
`formrelay suppress add`), and rates count the events recorded from now on. The same DDL
serves SQLite and PostgreSQL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 13:50:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("address", sa.String(320), nullable=False, unique=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ses_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sns_message_id", sa.String(100), nullable=False, index=True),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("bounce_type", sa.String(32)),
        sa.Column("sub_type", sa.String(64)),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("ses_message_id", sa.String(255)),
        sa.Column(
            "delivery_id",
            sa.Integer(),
            sa.ForeignKey("deliveries.id", ondelete="SET NULL"),
            index=True,
        ),
        sa.Column("form_id", sa.Integer(), sa.ForeignKey("forms.id", ondelete="SET NULL")),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ses_events_type_created", "ses_events", ["event_type", "created_at"])
    op.create_table(
        "sns_messages",
        sa.Column("message_id", sa.String(100), primary_key=True),
        sa.Column("message_type", sa.String(40), nullable=False),
        sa.Column("topic_arn", sa.String(300), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sns_messages_received_at", "sns_messages", ["received_at"])
    op.create_table(
        "send_rates",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("next_slot", sa.Float(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("send_rates")
    op.drop_index("ix_sns_messages_received_at", table_name="sns_messages")
    op.drop_table("sns_messages")
    op.drop_index("ix_ses_events_type_created", table_name="ses_events")
    op.drop_table("ses_events")
    op.drop_table("suppressions")
