"""Full-text search over field values, on SQLite (FTS5) and PostgreSQL (tsvector)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import func, select

from formrelay.extensions import db
from formrelay.models import Submission
from formrelay.services import search
from formrelay.services.inbox import SubmissionFilter, delete_submissions, filtered, page

from ..factories import make_form, make_submission, make_user


def found(f: SubmissionFilter) -> list[str]:
    """The `message` (or first value) of each submission `f` selects, newest first."""
    return [s.fields[0][1] for s in db.session.scalars(filtered(None, f))]


@pytest.fixture
def corpus(app: Flask) -> None:
    form = make_form(db.session)
    for n, text in enumerate(
        [
            "The quick brown fox jumps",
            "A brown dog sleeps",
            "Foxglove grows in the garden",
            "Write to ann@example.org please",
            "Line one\nline two with zebra",
            "Résumé attached",
            "ordinary words again",
        ]
    ):
        make_submission(
            db.session,
            form,
            fields={"message": text},
            created_at=datetime(2026, 11, 1 + n, 12, tzinfo=UTC),
        )


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("brown", ["A brown dog sleeps", "The quick brown fox jumps"]),
        ("BROWN fox", ["The quick brown fox jumps"]),  # every word, any case
        ('"brown fox"', ["The quick brown fox jumps"]),  # a phrase
        ('"fox brown"', []),  # the words in that order only
        ("fox", ["The quick brown fox jumps"]),  # a word is whole
        ("fox*", ["Foxglove grows in the garden", "The quick brown fox jumps"]),  # a prefix
        ("ann@example.org", ["Write to ann@example.org please"]),  # an address as typed
        ("example.org", ["Write to ann@example.org please"]),
        ("zebra", ["Line one\nline two with zebra"]),  # any line of a value
        ("resume", ["Résumé attached"]),  # accents aside (SQLite), as typed (both)
        ("nothing-like-this", []),
    ],
)
def test_search_finds_words_phrases_and_prefixes(corpus: None, q: str, expected: list[str]) -> None:
    if q == "resume" and db.engine.dialect.name == "postgresql":
        q = "résumé"  # 'simple' keeps accents
    assert found(SubmissionFilter(q=q)) == expected


@pytest.mark.parametrize(
    "q",
    [
        '"',
        '""',
        "*",
        "**",
        "NEAR(",
        "NEAR(a b",
        ":",
        "&|!",
        "a:b",
        "'",
        "''quoted''",
        "\\",
        "(",
        ")",
        "-brown",
        "brown OR",
        "AND",
        "^brown",
        "brown:*",
        "!!!",
        "col:brown",
        "{body}: brown",
        '"unclosed phrase',
        "x" * 3000,
        "\x00",
        "💥",
        "_",
    ],
)
def test_odd_queries_never_raise(corpus: None, q: str) -> None:
    found(SubmissionFilter(q=q))
    found(SubmissionFilter(q=f"brown {q}"))


@pytest.mark.parametrize("q", ["", "   ", "!!!", '"', "*", "&|!", "_"])
def test_a_query_without_words_filters_nothing(corpus: None, q: str) -> None:
    assert len(found(SubmissionFilter(q=q))) == 7


def test_punctuation_around_words_is_ignored(corpus: None) -> None:
    assert found(SubmissionFilter(q='brown:* "dog')) == ["A brown dog sleeps"]
    assert found(SubmissionFilter(q="(brown), dog!")) == ["A brown dog sleeps"]


def test_search_combines_with_the_spam_folder_and_dates(app: Flask) -> None:
    form = make_form(db.session)
    for day, spam in [(1, False), (2, True), (3, False), (20, False)]:
        make_submission(
            db.session,
            form,
            fields={"message": f"invoice day {day}"},
            spam=spam,
            created_at=datetime(2026, 11, day, 9, tzinfo=UTC),
        )
    make_submission(db.session, form, fields={"message": "unrelated"})
    assert found(SubmissionFilter(q="invoice")) == [
        "invoice day 20",
        "invoice day 3",
        "invoice day 1",
    ]
    assert found(SubmissionFilter(q="invoice", spam=True)) == ["invoice day 2"]
    assert found(
        SubmissionFilter(
            q="invoice",
            since=datetime(2026, 11, 2, tzinfo=UTC),
            until=datetime(2026, 11, 10, tzinfo=UTC),
        )
    ) == ["invoice day 3"]


def test_search_stays_within_the_actors_forms(app: Flask) -> None:
    ann = make_user(db.session, "ann@example.com", admin=False)
    bob = make_user(db.session, "bob@example.com", admin=False)
    make_submission(db.session, make_form(db.session, owner=ann), fields={"m": "shared word"})
    make_submission(db.session, make_form(db.session, owner=bob), fields={"m": "shared word too"})
    assert [
        s.fields[0][1] for s in db.session.scalars(filtered(ann, SubmissionFilter(q="shared")))
    ] == ["shared word"]


def test_a_rare_word_is_found_among_many_common_ones(app: Flask) -> None:
    form = make_form(db.session)
    for n in range(60):
        make_submission(db.session, form, fields={"message": f"hello common {n}"})
    make_submission(db.session, form, fields={"message": "hello common xylophone"})
    assert found(SubmissionFilter(q="xylophone")) == ["hello common xylophone"]
    assert len(found(SubmissionFilter(q="common"))) == 61


def test_deleted_submissions_leave_search(app: Flask) -> None:
    owner = make_user(db.session)
    form = make_form(db.session, owner=owner)
    gone = make_submission(db.session, form, fields={"message": "ephemeral note"})
    make_submission(db.session, form, fields={"message": "ephemeral but kept"})
    delete_submissions(db.session, owner, [gone.id])
    db.session.commit()
    assert found(SubmissionFilter(q="ephemeral")) == ["ephemeral but kept"]
    if db.engine.dialect.name == "sqlite":
        assert db.session.scalar(select(func.count()).select_from(search.FTS)) == 1


def test_deleting_a_form_removes_its_submissions_from_the_index(app: Flask) -> None:
    form = make_form(db.session)
    make_submission(db.session, form, fields={"message": "cascade me"})
    db.session.delete(db.session.get(type(form), form.id))
    db.session.commit()
    assert found(SubmissionFilter(q="cascade")) == []
    if db.engine.dialect.name == "sqlite":
        assert db.session.scalar(select(func.count()).select_from(search.FTS)) == 0


@pytest.mark.parametrize(
    ("q", "terms"),
    [
        ("brown fox", [search.Term(("brown",)), search.Term(("fox",))]),
        ('"Brown Fox" jump*', [search.Term(("brown", "fox")), search.Term(("jump",), True)]),
        ("ann@example.org", [search.Term(("ann", "example", "org"))]),
        ('NEAR( "', [search.Term(("near",))]),
        ("&|! :", []),
    ],
)
def test_queries_are_rebuilt_from_their_words(q: str, terms: list[search.Term]) -> None:
    assert search.parse_query(q) == terms


def test_the_rebuilt_syntax_quotes_every_word() -> None:
    terms = search.parse_query('near "a b" c*')
    assert search.fts5_query(terms) == '"near" AND "a b" AND "c" *'
    assert search.tsquery(terms) == "('near') & ('a' <-> 'b') & ('c':*)"


def test_submissions_stored_before_the_index_are_backfilled(app: Flask) -> None:
    """Migration 0004 indexes what is there already: down to 0003 (no index), a submission
    stored then, up again, and it is found."""
    from flask_migrate import downgrade, upgrade

    form_id = make_form(db.session).id
    db.session.remove()
    downgrade(revision="0003")
    with db.engine.begin() as conn:
        conn.execute(
            Submission.__table__.insert(),
            [
                {
                    "form_id": form_id,
                    "fields": [["message", "from the old days"]],
                    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                    "cc": [],
                }
            ],
        )
    upgrade()
    assert found(SubmissionFilter(q="old days")) == ["from the old days"]


@pytest.mark.parametrize("probe_limit", [1000, 2])
def test_a_page_of_search_results_is_the_same_for_rare_and_common_words(
    app: Flask, monkeypatch: pytest.MonkeyPatch, probe_limit: int
) -> None:
    """SQLite plans a rare word (looked up by id) and a common one (the index walked)
    differently; the pages are the same."""
    monkeypatch.setattr(search, "PROBE_LIMIT", probe_limit)
    form = make_form(db.session)
    made = [
        make_submission(db.session, form, fields={"message": f"common word {n}"}).id
        for n in range(5)
    ]
    make_submission(db.session, form, fields={"message": "other"})
    first = page(db.session, None, SubmissionFilter(form=form, q="common"), size=3)
    assert [s.id for s in first.submissions] == made[::-1][:3]
    rest = page(db.session, None, SubmissionFilter(form=form, q="common"), older=first.older)
    assert [s.id for s in rest.submissions] == made[::-1][3:]


@pytest.mark.parametrize("index", [True, False])
def test_rows_inserted_in_bulk_are_searchable_unless_the_index_is_off(
    app: Flask, index: bool
) -> None:
    """What ingest and imports call: one executemany for the rows, one for their entries."""
    form = make_form(db.session)
    rows = [
        {
            "form_id": form.id,
            "created_at": datetime(2026, 11, 1, n, tzinfo=UTC),
            "fields": [["message", f"bulk row {n}"], ["email", f"p{n}@example.org"]],
            "cc": [],
            "is_spam": False,
        }
        for n in range(3)
    ]
    ids = search.insert_submissions(db.session.connection(), rows, index=index)
    db.session.commit()
    assert len(ids) == 3
    expected = [ids[1]] if index else []
    assert [
        s.id for s in db.session.scalars(filtered(None, SubmissionFilter(q="p1@example.org")))
    ] == expected
