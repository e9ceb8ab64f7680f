"""Submissions per form and UTC day (inbox and spam apart), kept by triggers, backfilled.

The forms list reads a busy form's total and its 30 daily counts from here instead of
counting its rows. Triggers keep it exact in the transaction of every change, whatever
makes it: ingest, import, deleting one or many, emptying spam, a form's cascade, a move
between inbox and spam.

- SQLite: row triggers (each an upsert or an update by primary key, in C).
- PostgreSQL: statement triggers over the transition tables for INSERT and DELETE, so that
  a group commit's batch or a form's cascade costs one aggregated statement, not one
  PL/pgSQL call per row; a row trigger for UPDATE, filtered by its WHEN clause, as moves
  are few and most updates touch other columns.

A delete only ever decrements (UPDATE, never an upsert): a row being deleted was counted,
and during a form's cascade its count rows may be gone already, where an insert would break
the foreign key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:10:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE_DAY = "date({row}.created_at)"  # created_at is stored as naive UTC text
PG_DAY = "(({row}.created_at AT TIME ZONE 'UTC')::date)"
UPSERT = "ON CONFLICT (form_id, day, is_spam) DO UPDATE SET n = submission_counts.n + excluded.n"

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER submission_counts_insert AFTER INSERT ON submissions BEGIN
        INSERT INTO submission_counts (form_id, day, is_spam, n)
        VALUES (new.form_id, {SQLITE_DAY.format(row="new")}, new.is_spam, 1) {UPSERT};
    END""",
    f"""CREATE TRIGGER submission_counts_delete AFTER DELETE ON submissions BEGIN
        UPDATE submission_counts SET n = n - 1
        WHERE form_id = old.form_id AND day = {SQLITE_DAY.format(row="old")}
          AND is_spam = old.is_spam;
    END""",
    f"""CREATE TRIGGER submission_counts_update
    AFTER UPDATE OF form_id, created_at, is_spam ON submissions
    WHEN old.form_id IS NOT new.form_id OR old.is_spam IS NOT new.is_spam
      OR {SQLITE_DAY.format(row="old")} IS NOT {SQLITE_DAY.format(row="new")}
    BEGIN
        UPDATE submission_counts SET n = n - 1
        WHERE form_id = old.form_id AND day = {SQLITE_DAY.format(row="old")}
          AND is_spam = old.is_spam;
        INSERT INTO submission_counts (form_id, day, is_spam, n)
        VALUES (new.form_id, {SQLITE_DAY.format(row="new")}, new.is_spam, 1) {UPSERT};
    END""",
]

# Groups are written in primary-key order, so that two transactions counting the same
# days take the rows' locks in the same order and cannot deadlock.
PG_TRIGGERS = [
    f"""CREATE FUNCTION submission_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO submission_counts (form_id, day, is_spam, n)
        SELECT form_id, {PG_DAY.format(row="added")}, is_spam, count(*)
        FROM added GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        {UPSERT};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER submission_counts_insert AFTER INSERT ON submissions
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION submission_counts_insert()""",
    f"""CREATE FUNCTION submission_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE submission_counts AS c SET n = c.n - gone.n
        FROM (
            SELECT form_id, {PG_DAY.format(row="removed")} AS day, is_spam, count(*) AS n
            FROM removed GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ) AS gone
        WHERE c.form_id = gone.form_id AND c.day = gone.day AND c.is_spam = gone.is_spam;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER submission_counts_delete AFTER DELETE ON submissions
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION submission_counts_delete()""",
    f"""CREATE FUNCTION submission_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE submission_counts SET n = n - 1
        WHERE form_id = OLD.form_id AND day = {PG_DAY.format(row="OLD")}
          AND is_spam = OLD.is_spam;
        INSERT INTO submission_counts (form_id, day, is_spam, n)
        VALUES (NEW.form_id, {PG_DAY.format(row="NEW")}, NEW.is_spam, 1) {UPSERT};
        RETURN NULL;
    END $$""",
    f"""CREATE TRIGGER submission_counts_update
    AFTER UPDATE OF form_id, created_at, is_spam ON submissions FOR EACH ROW
    WHEN (OLD.form_id IS DISTINCT FROM NEW.form_id OR OLD.is_spam IS DISTINCT FROM NEW.is_spam
          OR {PG_DAY.format(row="OLD")} IS DISTINCT FROM {PG_DAY.format(row="NEW")})
    EXECUTE FUNCTION submission_counts_update()""",
]


def upgrade() -> None:
    op.create_table(
        "submission_counts",
        sa.Column("form_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("is_spam", sa.Boolean(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("form_id", "day", "is_spam"),
        # Rows kept in primary-key order: summing a form's days reads no other b-tree.
        sqlite_with_rowid=False,
    )
    dialect = op.get_bind().dialect.name
    day = {"sqlite": SQLITE_DAY, "postgresql": PG_DAY}[dialect].format(row="submissions")
    if dialect == "postgresql":
        # Writers wait from the count to the triggers' creation: none is missed. (SQLite's
        # write lock, taken by the INSERT below, does the same.)
        op.execute("LOCK TABLE submissions IN SHARE ROW EXCLUSIVE MODE")
    # In the migration's transaction, before the triggers: nothing is counted twice.
    op.execute(
        "INSERT INTO submission_counts (form_id, day, is_spam, n) "
        f"SELECT form_id, {day}, is_spam, count(*) FROM submissions GROUP BY 1, 2, 3"
    )
    for statement in SQLITE_TRIGGERS if dialect == "sqlite" else PG_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in ("insert", "delete", "update"):
        if postgresql:
            op.execute(f"DROP TRIGGER IF EXISTS submission_counts_{name} ON submissions")
            op.execute(f"DROP FUNCTION IF EXISTS submission_counts_{name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS submission_counts_{name}")
    op.drop_table("submission_counts")
