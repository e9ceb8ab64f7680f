"""File uploads: a form's upload policy and retention, and the attachments table.

Existing forms get uploads off and the default limits (server defaults fill the rows);
no attachment exists before this revision, so there is nothing to backfill beyond that.
The same DDL serves SQLite and PostgreSQL: every new column has a server default or is
nullable, so SQLite adds them in place (ALTER TABLE ADD COLUMN); only the downgrade needs
batch mode (a table copy) there to drop them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 13:50:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DEFAULT_ALLOWED_TYPES = (
    "pdf,txt,csv,rtf,doc,docx,odt,xls,xlsx,ods,ppt,pptx,odp,jpg,jpeg,png,gif,webp,heic,zip"
)


def upgrade() -> None:
    op.add_column(
        "forms",
        sa.Column("files_enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "forms", sa.Column("max_file_mb", sa.Integer(), nullable=False, server_default="10")
    )
    op.add_column(
        "forms", sa.Column("max_total_mb", sa.Integer(), nullable=False, server_default="25")
    )
    op.add_column("forms", sa.Column("max_files", sa.Integer(), nullable=False, server_default="5"))
    op.add_column(
        "forms",
        sa.Column(
            "allowed_types",
            sa.String(1000),
            nullable=False,
            server_default=DEFAULT_ALLOWED_TYPES,
        ),
    )
    op.add_column("forms", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "submission_id",
            sa.Integer(),
            sa.ForeignKey("submissions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_attachments_submission_id", "attachments", ["submission_id"])


def downgrade() -> None:
    op.drop_index("ix_attachments_submission_id", table_name="attachments")
    op.drop_table("attachments")
    # In place (SQLite has dropped columns since 3.35): a batch would copy `forms` and drop
    # the old table, and with foreign keys on that deletes every submission (ON DELETE
    # CASCADE), as 0010's test found.
    for column in (
        "retention_days",
        "allowed_types",
        "max_files",
        "max_total_mb",
        "max_file_mb",
        "files_enabled",
    ):
        op.execute(f"ALTER TABLE forms DROP COLUMN {column}")
