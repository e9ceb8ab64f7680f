"""Accounts for the dashboard: confirmation, sessions, time zone; store-only forms; the
dashboard's own mail in the outbox; single-use tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:00:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pending_email", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False)
        )
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("store_only", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("submission_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("message", JSONType, nullable=True))
    op.create_table(
        "used_tokens",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("used_tokens")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("message")
        batch_op.alter_column("submission_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.drop_column("store_only")
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in (
            "last_login_at",
            "session_version",
            "timezone",
            "disabled",
            "pending_email",
            "confirmed_at",
        ):
            batch_op.drop_column(column)
