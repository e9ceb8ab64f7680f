"""An index over every form's submissions by folder and time: the lists and exports across
forms ("All submissions", an admin's export) read it newest first instead of sorting them
all (2.7 s for the first page at a million rows on SQLite, measured).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:10:00

"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_submissions_spam_created", "submissions", ["is_spam", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_submissions_spam_created", table_name="submissions")
