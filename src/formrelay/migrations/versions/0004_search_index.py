"""Full-text search over submissions: an FTS5 table on SQLite, a tsvector column with a
GIN index on PostgreSQL, each backfilled from the submissions already stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:30:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from formrelay.services.search import search_text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Keeps its own copy of the indexed words (not contentless): SQLite 3.40 cannot
        # delete from a contentless table by rowid alone.
        op.execute(
            "CREATE VIRTUAL TABLE submissions_fts USING fts5("
            "body, tokenize = 'unicode61 remove_diacritics 2')"
        )
        # A submission deleted any way (one, a selection, its form's cascade) leaves no
        # entry behind.
        op.execute(
            "CREATE TRIGGER submissions_fts_delete AFTER DELETE ON submissions BEGIN "
            "DELETE FROM submissions_fts WHERE rowid = old.id; END"
        )
        _backfill(bind, sa.text("INSERT INTO submissions_fts (rowid, body) VALUES (:id, :text)"))
    elif bind.dialect.name == "postgresql":
        op.add_column("submissions", sa.Column("search_vector", postgresql.TSVECTOR()))
        _backfill(
            bind,
            sa.text(
                "UPDATE submissions SET search_vector = to_tsvector('simple', :text) WHERE id = :id"
            ),
        )
        op.create_index(
            "ix_submissions_search_vector",
            "submissions",
            ["search_vector"],
            postgresql_using="gin",
        )


def _backfill(bind: sa.Connection, statement: sa.TextClause) -> None:
    """Index the submissions stored before this revision, in batches by id (the words are
    cut out in Python, exactly as ingest does)."""
    submissions = sa.table("submissions", sa.column("id"), sa.column("fields", sa.JSON()))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(submissions.c.id, submissions.c.fields)
            .where(submissions.c.id > last)
            .order_by(submissions.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        bind.execute(statement, [{"id": r.id, "text": search_text(r.fields)} for r in rows])
        last = rows[-1].id


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS submissions_fts_delete")
        op.execute("DROP TABLE IF EXISTS submissions_fts")
    elif bind.dialect.name == "postgresql":
        op.drop_index("ix_submissions_search_vector", table_name="submissions")
        op.drop_column("submissions", "search_vector")
