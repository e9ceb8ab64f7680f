"""The field names each form has received (form_fields), backfilled: the CSV export's
header, read from here instead of from a first pass over every submission.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:00:00

"""

import sqlalchemy as sa
from alembic import op

from formrelay.services.field_names import FIELD_SLOTS

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Each (form, name) with the position of its first appearance: the submission's id times
# FIELD_SLOTS plus the field's index, as services.field_names writes it.
BACKFILL = {
    "sqlite": f"""
        INSERT INTO form_fields (form_id, name, position)
        SELECT s.form_id, json_extract(f.value, '$[0]'), min(s.id * {FIELD_SLOTS} + f.key)
        FROM submissions AS s, json_each(s.fields) AS f
        WHERE json_extract(f.value, '$[0]') IS NOT NULL
        GROUP BY 1, 2""",
    "postgresql": f"""
        INSERT INTO form_fields (form_id, name, position)
        SELECT s.form_id, f.value ->> 0, min(s.id::bigint * {FIELD_SLOTS} + f.ordinality - 1)
        FROM submissions AS s, jsonb_array_elements(s.fields) WITH ORDINALITY AS f
        WHERE f.value ->> 0 IS NOT NULL
        GROUP BY 1, 2""",
}


def upgrade() -> None:
    op.create_table(
        "form_fields",
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("form_id", "name"),
        sqlite_with_rowid=False,
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # Writers wait until the table is filled, so none of their new names is missed.
        # (SQLite's write lock, taken by the INSERT, does the same.)
        op.execute("LOCK TABLE submissions IN SHARE ROW EXCLUSIVE MODE")
    op.execute(BACKFILL[dialect])


def downgrade() -> None:
    op.drop_table("form_fields")
