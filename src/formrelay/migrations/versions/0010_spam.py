"""Spam and abuse settings on each form; `_cc` becomes something an owner allows.

Every existing form gets the defaults, which for `_cc` means off: until today anyone could
make any form mail five addresses of their choosing per post (an open relay). Owners who
rely on it turn it back on (dashboard or `formrelay form update KEY --allow-cc on`).

The list columns are JSON (JSONB on PostgreSQL), filled with [] for existing rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:00:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LISTS = ("allowed_domains", "blocked_words", "blocked_senders", "blocked_addresses")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, not a batch: on SQLite a batch with these (SQL
    # expression) defaults copies the table and drops the old one, and with foreign keys
    # on, dropping `forms` deletes every submission (ON DELETE CASCADE).
    empty = sa.text("'[]'")
    columns = [
        *(sa.Column(name, _json(), nullable=False, server_default=empty) for name in LISTS),
        sa.Column("allow_headerless", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("rate_limit", sa.String(200), nullable=True),
        sa.Column("captcha_provider", sa.String(16), nullable=True),
        sa.Column("captcha_secret", sa.String(255), nullable=True),
        sa.Column("captcha_threshold", sa.Float(), nullable=False, server_default=sa.text("0.5")),
        sa.Column("captcha_action", sa.String(100), nullable=True),
        sa.Column("captcha_fail_open", sa.Boolean(), nullable=False, server_default=sa.true()),
        # Off for every form there is: the point of this migration.
        sa.Column("allow_cc", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("honeypot", sa.String(64), nullable=False, server_default="_gotcha"),
        sa.Column("max_links", sa.Integer(), nullable=True),
        sa.Column("min_seconds", sa.Integer(), nullable=True),
        sa.Column("akismet", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("notify_limit", sa.Integer(), nullable=True),
    ]
    for column in columns:
        op.add_column("forms", column)


def downgrade() -> None:
    # Column by column, in place: on SQLite a batch would copy the table and drop the old
    # one, and with foreign keys on, dropping `forms` deletes every submission (CASCADE).
    # SQLite has dropped columns in place since 3.35.
    for name in (
        "notify_limit",
        "akismet",
        "min_seconds",
        "max_links",
        "honeypot",
        "allow_cc",
        "captcha_fail_open",
        "captcha_action",
        "captcha_threshold",
        "captcha_secret",
        "captcha_provider",
        "rate_limit",
        "allow_headerless",
        *reversed(LISTS),
    ):
        op.execute(f"ALTER TABLE forms DROP COLUMN {name}")
