"""The dashboard at a million submissions, on SQLite and PostgreSQL, through the real server.

    .venv/bin/python bench/dashboard.py [--db sqlite,postgresql] [--rows 1000000] [--quick]

`make bench` runs it as its `dashboard` section (bench/run.py --only dashboard); alone, it
prints the same result and TARGET lines and writes nothing to bench/results.

Seeding: the app's migrations up to SEED_REVISION (the schema this seeder writes), then
three users, 21 forms and `--rows` submissions in bulk (Core inserts on SQLite, COPY on
PostgreSQL), one form holding 90% of them, then the later migrations over the seeded rows,
which is how an existing installation gets them: the search index's backfill among them.
Each submission has 4-8 fields (name, e-mail, a message and some of a form's other fields)
whose words are drawn from a frequency-ranked English word list with a Zipf distribution,
so that some words are in most messages and others in a handful. The SQLite database is
kept under bench/.cache (git-ignored), named by the seed version, the row count and the
migrations it was built with; the PostgreSQL one is a scratch database, dropped after.

Measuring: the Procfile's web line serving a copy of the database, signed in as the
owner (an admin: one self-hosted owner sees every form), one request at a time:
/forms, the big form's first page, its page 500 reached by following "Older" links, a
search for a rare and for a common word, and the CSV export of every submission with the
web workers' RSS sampled throughout. Then the ingest bench's peak (wrk, the worker
draining beside it) with the search index kept current and with it switched off, in
turns, on the same database.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import codecs
import contextlib
import csv
import hashlib
import itertools
import json
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urljoin

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Database, MailSink, Stack, children, rss_mb, wrk

# Bump when the generated data changes: the cached SQLite database is rebuilt.
SEED_VERSION = 1
# The schema the seeder writes; later migrations run over the seeded rows.
SEED_REVISION = "0003"
MIGRATIONS = ROOT / "src" / "formrelay" / "migrations" / "versions"
CACHE = ROOT / "bench" / ".cache"
ROWS = 1_000_000
BIG_SHARE = 0.9  # of the rows, in the owner's "Contact" form
SPAN = timedelta(days=730)  # the submissions arrived over the last two years
SPAM_SHARE = 0.02
ZIPF_EXPONENT = 1.05
OWNER = "owner@bench.example"
PASSWORD = "bench-owner-passphrase"
# How ingest is told not to keep the search index (the subs branch's setting).
SEARCH_INDEX_SETTING = "FORMRELAY_SEARCH_INDEX"
DEEP_PAGE = 500
# Bounds that keep a slow page or export from taking the run's time (each is reported).
WALK_BUDGET_S = 120.0
EXPORT_BUDGET_S = 60.0

GOALS = {  # target name -> (goal as printed, test)
    "forms_p95_ms": ("<50", lambda v: v < 50),
    "first_page_p95_ms": ("<30", lambda v: v < 30),
    "page_500_p95_ms": ("<30", lambda v: v < 30),
    "search_rare_p95_ms": ("<50", lambda v: v < 50),
    "search_common_p95_ms": ("<150", lambda v: v < 150),
    "export_rows_per_s": (">=50000", lambda v: v >= 50_000),
    "export_peak_web_worker_rss_mb": ("<150", lambda v: v < 150),
    "search_index_ingest_ratio_vs_off": (">=0.9", lambda v: v >= 0.9),
    # Ours: keeping the export's field names takes at most 5% of a group commit's time.
    "field_names_share_of_batch": ("<=0.05", lambda v: v <= 0.05),
}


# -- the data -----------------------------------------------------------------------------
FORMS = [  # name, owner (index into USERS), optional fields beside name, e-mail, message
    ("Contact", 0, ["phone", "company", "subject", "website", "source"]),
    ("Quote request", 0, ["company", "phone", "budget", "date", "website"]),
    ("Newsletter feedback", 0, ["subject", "source", "city", "company", "phone"]),
    ("Job application", 0, ["phone", "city", "website", "date", "source"]),
    ("Event RSVP", 0, ["date", "phone", "city", "company", "subject"]),
    ("Support", 0, ["subject", "company", "phone", "website", "source"]),
    ("Partnerships", 0, ["company", "website", "phone", "budget", "city"]),
    ("Studio contact", 1, ["phone", "subject", "budget", "date", "city"]),
    ("Workshop sign-up", 1, ["date", "city", "phone", "source", "company"]),
    ("Portfolio enquiry", 1, ["company", "budget", "website", "phone", "subject"]),
    ("Bookings", 1, ["date", "phone", "city", "subject", "source"]),
    ("Press", 1, ["company", "website", "subject", "phone", "city"]),
    ("Volunteers", 1, ["city", "phone", "date", "source", "subject"]),
    ("Wholesale", 1, ["company", "budget", "phone", "city", "website"]),
    ("Shop questions", 2, ["subject", "phone", "source", "city", "company"]),
    ("Returns", 2, ["subject", "date", "phone", "city", "source"]),
    ("Careers", 2, ["phone", "website", "city", "date", "source"]),
    ("Beta waitlist", 2, ["company", "website", "source", "city", "subject"]),
    ("Donations", 2, ["phone", "city", "source", "company", "date"]),
    ("Survey", 2, ["source", "city", "subject", "company", "budget"]),
    ("Old landing page", 2, ["subject", "phone", "company", "source", "website"]),
]
USERS = [OWNER, "ana@bench.example", "bo@bench.example"]
BUDGETS = ["under 1k", "1k to 5k", "5k to 20k", "over 20k", "not sure yet"]
SOURCES = ["Search engine", "A friend", "Newsletter", "Conference", "Social media", "Podcast"]
CITIES = ["London", "Leeds", "Berlin", "Lyon", "Porto", "Austin", "Toronto", "Dublin", "Oslo"]
SUFFIXES = ["Ltd", "GmbH", "and Co", "Studio", "Labs", "Inc", "Partners", "Group"]
DOMAINS = ["example.org", "example.com", "example.net", "mail.example", "post.example"]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.0 Safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/130.0 Mobile Safari/537.36",
]
# PostgreSQL's English configuration drops these, so the common word is none of them.
_STOP_WORDS = (
    "a about above after again against all am an and any are as at be because been before "
    "being below between both but by can did do does doing down during each few for from "
    "further had has have having he her here hers herself him himself his how i if in into "
    "is it its itself just me more most my myself no nor not now of off on once only or "
    "other our ours ourselves out over own same she should so some such than that the "
    "their theirs them themselves then there these they this those through to too under "
    "until up very was we were what when where which while who whom why will with you "
    "your yours yourself yourselves would also"
)
STOP_WORDS = frozenset(_STOP_WORDS.split())


class Corpus:
    """Words ranked by frequency in English (zxcvbn's Wikipedia list, which formrelay ships
    for its password check), drawn with a Zipf distribution; names and surnames likewise.

    Drawing each word on its own costs more than the rest of a submission together, so a
    stream of STREAM words is drawn once and each text is a window of it at a random place:
    every word of a text is still a Zipf draw, the texts all differ, and a word of the
    stream's tail lands in a handful of them.
    """

    STREAM = 4_000_000
    ARTEFACTS = frozenset({"doc", "https", "http", "www", "html", "com"})  # of the dump

    def __init__(self, rng: random.Random) -> None:
        from zxcvbn.frequency_lists import FREQUENCY_LISTS as lists

        self.rng = rng
        self.words = [
            w
            for w in lists["english_wikipedia"]
            if w.isalpha() and w.isascii() and w not in self.ARTEFACTS
        ]
        cum = list(
            itertools.accumulate(1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(self.words)))
        )
        self.stream = rng.choices(self.words, cum_weights=cum, k=self.STREAM)
        self.first_names = lists["female_names"][:800] + lists["male_names"][:800]
        self.surnames = lists["surnames"][:4000]
        self.pages, self.sites = self.words[:300], self.words[:3000]
        # The most frequent word a search would look for (not a stop word), and one of the
        # least frequent: in a few dozen submissions of a million.
        self.common = next(w for w in self.words if len(w) >= 4 and w not in STOP_WORDS)
        self.rare = next(w for w in reversed(self.words) if len(w) >= 9)

    def pick(self, items: list[str]) -> str:
        return items[int(self.rng.random() * len(items))]

    def tokens(self, n: int) -> list[str]:
        at = int(self.rng.random() * (self.STREAM - n))
        return self.stream[at : at + n]

    def message(self) -> tuple[str, list[str]]:
        """A message of varied length (1 to 400 words, median 25), in sentences and
        paragraphs; with its words."""
        rnd = self.rng.random
        n = max(1, min(400, int(self.rng.lognormvariate(3.2, 0.9))))
        words = self.tokens(n)
        sentences, i = [], 0
        while i < n:
            k = 5 + int(rnd() * 14)
            text = " ".join(words[i : i + k])
            sentences.append(text[0].upper() + text[1:] + ("?" if rnd() < 0.15 else "."))
            i += k
        if len(sentences) <= 4:
            return " ".join(sentences), words
        cut = 2 + int(rnd() * 3)
        paragraphs = [" ".join(sentences[j : j + cut]) for j in range(0, len(sentences), cut)]
        return "\n\n".join(paragraphs), words


@dataclass
class Seed:
    """What the harness needs to know of a seeded database."""

    rows: int
    form_keys: list[str]  # the big form first
    owner_form_keys: list[str]
    rare_word: str
    rare_hits: int  # inbox submissions of the big form holding it
    common_word: str
    common_hits: int
    inbox_rows: int  # not spam, all forms: what /submissions/export.csv gives
    big_form_inbox_rows: int
    seed_seconds: float = 0.0  # generating and inserting
    migrate_seconds: float = 0.0  # the migrations after SEED_REVISION, over the seeded rows


@dataclass
class Generated:
    """Submissions and their deliveries, a batch at a time, with what the seed records."""

    rows: int
    rng: random.Random = field(default_factory=lambda: random.Random(20261201))
    end: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=5))

    def __post_init__(self) -> None:
        self.corpus = Corpus(self.rng)
        self.form_keys = [
            base64.urlsafe_b64encode(self.rng.randbytes(12)).decode().replace("-", "x")
            for _ in FORMS
        ]
        # The big form takes BIG_SHARE; the others share the rest, a few of them much more
        # than the others.
        rest = [1 / (i + 1) for i in range(len(FORMS) - 1)]
        scale = (1 - BIG_SHARE) / sum(rest)
        self.form_weights = list(itertools.accumulate([BIG_SHARE] + [w * scale for w in rest]))
        self.rare_hits = self.common_hits = self.inbox_rows = self.big_form_inbox_rows = 0

    def batches(self, size: int = 20_000) -> Iterator[tuple[list[tuple], list[tuple]]]:
        """Rows for SUBMISSION_COLUMNS and DELIVERY_COLUMNS, as the database stores them:
        JSON as text, times as UTC without an offset (SQLAlchemy's SQLite format)."""
        rnd, corpus = self.rng.random, self.corpus
        start = (self.end - SPAN).replace(tzinfo=None)
        step = SPAN.total_seconds() / self.rows
        retry_at = _stored_time(self.end.replace(tzinfo=None) + timedelta(hours=1))
        last_form = len(FORMS) - 1
        owners = [USERS[owner] for _, owner, _ in FORMS]
        subs: list[tuple] = []
        deliveries: list[tuple] = []
        for i in range(self.rows):
            created = start + timedelta(seconds=step * (i + rnd()))
            at = _stored_time(created)
            form_index = min(bisect.bisect(self.form_weights, rnd()), last_form)
            fields, words = self._fields(form_index, created)
            spam = rnd() < SPAM_SHARE
            subs.append(
                (
                    i + 1,
                    form_index + 1,
                    at,
                    json.dumps(fields),
                    fields[1][1],  # reply_to: the e-mail field
                    None,
                    "[]",
                    f"203.0.{int(rnd() * 256)}.{1 + int(rnd() * 254)}",
                    corpus.pick(AGENTS),
                    f"https://www.example.com/{corpus.pick(corpus.pages)}",
                    "https://www.example.com",
                    spam,
                    "honeypot" if spam else None,
                )
            )
            if not spam:
                self.inbox_rows += 1
                if form_index == 0:
                    self.big_form_inbox_rows += 1
                    self.rare_hits += corpus.rare in words
                    self.common_hits += corpus.common in words
                sent = _stored_time(created + timedelta(seconds=2))
                roll = rnd()
                if roll < 0.0005:
                    status = ("dead", 13, None, "550 5.1.1 mailbox unavailable", None)
                elif roll < 0.0025:
                    status = ("failed", 3, retry_at, "421 4.7.0 try again later", None)
                else:
                    status = ("sent", 1, None, None, sent)
                state, attempts, next_at, error, sent_at = status
                deliveries.append(
                    (i + 1, None, "email", owners[form_index], "[]", state, attempts, next_at,
                     None, None, error, None, sent_at, at, sent)
                )  # fmt: skip
            if len(subs) >= size:
                yield subs, deliveries
                subs, deliveries = [], []
        if subs:
            yield subs, deliveries

    def _fields(self, form_index: int, created: datetime) -> tuple[list[list[str]], list[str]]:
        rnd, corpus, pick = self.rng.random, self.corpus, self.corpus.pick
        first, last = pick(corpus.first_names), pick(corpus.surnames)
        message, words = corpus.message()
        # 4 to 8 fields: name, e-mail and message, and 1 to 5 of the form's others.
        optional = FORMS[form_index][2]
        keep = (1 + int(rnd() * 5)) / len(optional)
        fields = [
            ["name", f"{first.title()} {last.title()}"],
            ["email", f"{first}.{last}{int(rnd() * 100)}@{pick(DOMAINS)}"],
        ]
        for n, name in enumerate(optional):
            if n and rnd() >= keep:
                continue
            if name == "subject":
                subject = corpus.tokens(2 + int(rnd() * 6))
                words = words + subject
                value = " ".join(subject).capitalize()
            elif name == "phone":
                value = f"+44 20 7946 {int(rnd() * 10000):04d}"
            elif name == "company":
                value = f"{pick(corpus.surnames).title()} {pick(SUFFIXES)}"
            elif name == "website":
                value = f"https://{pick(corpus.sites)}.example.com"
            elif name == "budget":
                value = pick(BUDGETS)
            elif name == "source":
                value = pick(SOURCES)
            elif name == "date":
                value = (created + timedelta(days=3 + int(rnd() * 88))).date().isoformat()
            else:
                value = pick(CITIES)
            fields.append([name, value])
        fields.append(["message", message])
        return fields, words

    def seed(self) -> Seed:
        corpus = self.corpus
        return Seed(
            rows=self.rows,
            form_keys=self.form_keys,
            owner_form_keys=[k for k, f in zip(self.form_keys, FORMS, strict=True) if f[1] == 0],
            rare_word=corpus.rare,
            rare_hits=self.rare_hits,
            common_word=corpus.common,
            common_hits=self.common_hits,
            inbox_rows=self.inbox_rows,
            big_form_inbox_rows=self.big_form_inbox_rows,
        )


# -- seeding ------------------------------------------------------------------------------
SUBMISSION_COLUMNS = (
    "id", "form_id", "created_at", "fields", "reply_to", "subject", "cc", "remote_addr",
    "user_agent", "referrer", "origin", "is_spam", "spam_reason",
)  # fmt: skip
DELIVERY_COLUMNS = (
    "submission_id", "message", "channel", "target", "cc", "status", "attempts",
    "next_attempt_at", "lease_expires_at", "leased_by", "last_error", "provider_message_id",
    "sent_at", "created_at", "updated_at",
)  # fmt: skip
SUBMISSION_TIMES = {SUBMISSION_COLUMNS.index("created_at")}
DELIVERY_TIMES = {
    DELIVERY_COLUMNS.index(c)
    for c in ("next_attempt_at", "lease_expires_at", "sent_at", "created_at", "updated_at")
}


def _stored_time(moment: datetime) -> str:
    """A naive UTC datetime as SQLAlchemy stores it on SQLite (PostgreSQL reads it too)."""
    return moment.isoformat(" ", "microseconds")


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def migrate(url: str, instance: Path, revision: str) -> float:
    """The app's migrations up to `revision`, as the app runs them; returns the seconds."""
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from pathlib import Path\n"
            "from flask_migrate import upgrade\n"
            "from formrelay import create_app\n"
            "from formrelay.extensions import db\n"
            "app = create_app({'database_url': sys.argv[1], 'instance_path': Path(sys.argv[2]),"
            " 'secret_key': 'bench'})\n"
            "with app.app_context():\n"
            "    upgrade(revision=sys.argv[3])\n"
            "    db.engine.dispose()\n",
            url,
            str(instance),
            revision,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrating to {revision} failed:\n{result.stderr}")
    return time.monotonic() - started


def _accounts(conn: Any, generated: Generated) -> None:
    """The three users (the owner an admin, with a password) and the 21 forms."""
    from sqlalchemy import column, insert, select, table

    from formrelay.models import Form, Role, User
    from formrelay.services.passwords import hash_password

    roles = dict(conn.execute(select(Role.name, Role.id)).all())
    created = generated.end - SPAN - timedelta(days=1)
    conn.execute(
        insert(User),
        [
            {
                "id": n + 1,
                "email": email,
                "password_hash": hash_password(PASSWORD),
                "role_id": roles["admin" if n == 0 else "member"],
                "created_at": created,
                "confirmed_at": created,
            }
            for n, email in enumerate(USERS)
        ],
    )
    # Only the columns the seed's revision has (SEED_REVISION): the model's later ones (and
    # their defaults) come with the migrations run after the seed.
    forms = table(
        "forms",
        column("id"),
        column("key"),
        column("name"),
        column("owner_id"),
        column("created_at", Form.__table__.c.created_at.type),
    )
    conn.execute(
        insert(forms),
        [
            {"id": n + 1, "key": key, "name": name, "owner_id": owner + 1, "created_at": created}
            for n, (key, (name, owner, _)) in enumerate(
                zip(generated.form_keys, FORMS, strict=True)
            )
        ],
    )


def seed_sqlite(path: Path, rows: int) -> Seed:
    """A SQLite database at `path` holding `rows` submissions (bulk inserts, batched)."""
    from sqlalchemy import create_engine, event

    started = time.monotonic()
    url = f"sqlite:///{path}"
    instance = path.parent / "instance"
    migrate(url, instance, SEED_REVISION)
    generated = Generated(rows)
    engine = create_engine(url)
    # A database being built needs no durability: it is renamed into place when complete.
    event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA synchronous=OFF"))
    with engine.begin() as conn:
        _accounts(conn, generated)
    submissions = _insert_sql("submissions", SUBMISSION_COLUMNS)
    deliveries = _insert_sql("deliveries", DELIVERY_COLUMNS)
    for subs, dels in generated.batches():
        with engine.begin() as conn:
            conn.exec_driver_sql(submissions, subs)
            conn.exec_driver_sql(deliveries, dels)
        _progress("sqlite", subs[-1][0], rows, started)
    engine.dispose()
    seed = generated.seed()
    seed.seed_seconds = time.monotonic() - started
    seed.migrate_seconds = migrate(url, instance, "head")
    print(
        f"sqlite: seeded {rows} rows in {seed.seed_seconds:.0f} s, later migrations "
        f"{seed.migrate_seconds:.0f} s",
        file=sys.stderr,
    )
    return seed


def seed_postgresql(url: str, source: Path, seed: Seed, instance: Path) -> Seed:
    """The PostgreSQL database at `url`, migrated to the head, holding the rows of the
    seeded SQLite database `source` (the same data on both), analysed.

    COPY, with the secondary indexes built after the load. With a search vector column
    (migration 0004), each row's vector is what ingest writes,
    to_tsvector('simple', search.search_text(fields)): the rows go through an unlogged
    staging table with that text beside them, moved over with one INSERT ... SELECT a
    batch. (The migration's own backfill updates row by row: minutes at this size, which
    an installation upgrading pays once and the benchmark would pay on every run.)
    """
    import psycopg

    from formrelay.settings import normalize_database_url

    started = time.monotonic()
    migrate_seconds = migrate(normalize_database_url(url, instance), instance, "head")
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    with psycopg.connect(url) as conn:
        for table in ("users", "forms"):
            _copy_table(reader, conn, table, f"SELECT * FROM {table} ORDER BY id")
        columns = ", ".join(SUBMISSION_COLUMNS)
        vector = _search_vector(conn)
        rebuild = _drop_secondary_indexes(conn, ("submissions", "deliveries"))
        if vector is None:
            _copy_table(reader, conn, "submissions", f"SELECT {columns} FROM submissions")
        else:
            from formrelay.services.search import search_text

            conn.execute(
                "CREATE UNLOGGED TABLE seed_submissions (LIKE submissions INCLUDING DEFAULTS)"
            )
            conn.execute("ALTER TABLE seed_submissions ADD COLUMN seed_text text")
            position = SUBMISSION_COLUMNS.index("fields")
            _copy_table(
                reader,
                conn,
                "seed_submissions",
                f"SELECT {columns} FROM submissions ORDER BY id",
                extra=("seed_text", lambda row: search_text(json.loads(row[position]))),
                model_table="submissions",
                after_batch=(
                    f"INSERT INTO submissions ({columns}, {vector}) SELECT {columns},"
                    " to_tsvector('simple', seed_text) FROM seed_submissions;"
                    " TRUNCATE seed_submissions"
                ),
                progress=seed.rows,
                started=started,
            )
            conn.execute("DROP TABLE seed_submissions")
        # The columns later migrations added, as they filled them in on SQLite.
        later = [c for c in ("form_id",) if _has_column(reader, "deliveries", c)]
        _copy_table(
            reader,
            conn,
            "deliveries",
            f"SELECT {', '.join([*DELIVERY_COLUMNS, *later])} FROM deliveries ORDER BY id",
        )
        # The forms' field names (the CSV header), as migration 0006 filled them on SQLite:
        # copied, since the migrations here ran before the rows came.
        if _has_table(reader, "form_fields"):
            _copy_table(
                reader,
                conn,
                "form_fields",
                "SELECT form_id, name, position FROM form_fields ORDER BY position",
            )
        conn.execute("SET maintenance_work_mem = '256MB'")
        for definition in rebuild:
            conn.execute(definition)
        for table in ("users", "forms", "submissions", "deliveries"):
            conn.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        conn.commit()
    reader.close()
    # What autovacuum does to a table that has grown: statistics and the visibility map.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    loaded = replace(seed, seed_seconds=time.monotonic() - started, migrate_seconds=migrate_seconds)
    print(f"postgresql: loaded {seed.rows} rows in {loaded.seed_seconds:.0f} s", file=sys.stderr)
    return loaded


def _has_table(reader: Any, table: str) -> bool:
    found = reader.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


def _copy_table(
    reader: Any,
    conn: Any,
    table: str,
    query: str,
    *,
    extra: tuple[str, Callable[[tuple], Any]] | None = None,
    model_table: str | None = None,
    after_batch: str | None = None,
    progress: int = 0,
    started: float = 0.0,
) -> None:
    """The rows `query` reads from SQLite, copied into `table` on PostgreSQL: times get
    their UTC offset (SQLite keeps none), 0/1 stand for booleans as they are."""
    from formrelay.extensions import Base
    from formrelay.models import UTCDateTime

    cursor = reader.execute(query)
    names = [d[0] for d in cursor.description]
    model = Base.metadata.tables[model_table or table]
    times = {n for n, name in enumerate(names) if isinstance(model.c[name].type, UTCDateTime)}
    targets = names + ([extra[0]] if extra else [])
    done = 0
    while batch := cursor.fetchmany(20_000):
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(targets)}) FROM STDIN") as copy:
                for row in batch:
                    values = [v + "+00" if i in times and v else v for i, v in enumerate(row)]
                    if extra:
                        values.append(extra[1](row))
                    copy.write_row(values)
            if after_batch:
                cur.execute(after_batch)
        conn.commit()
        done += len(batch)
        if progress:
            _progress("postgresql", done, progress, started)


def _has_column(reader: Any, table: str, name: str) -> bool:
    return any(row[1] == name for row in reader.execute(f"PRAGMA table_info({table})"))


def _search_vector(conn: Any) -> str | None:
    """The submissions' search vector column, if the schema and the app have one."""
    try:
        from formrelay.services import search
    except ImportError:
        return None
    column = getattr(search, "VECTOR_COLUMN", None)
    found = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'submissions'"
        " AND column_name = %s",
        (column,),
    ).fetchone()
    return column if found else None


def _drop_secondary_indexes(conn: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop the indexes of `tables` that back no constraint; returns their definitions, to
    build them again once the rows are in (faster than keeping them up row by row)."""
    found = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " AND tablename = ANY(%s)"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        (list(tables),),
    ).fetchall()
    for name, _ in found:
        conn.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in found]


def _progress(name: str, done: int, rows: int, started: float) -> None:
    if done % 100_000 < 20_000 or done == rows:
        elapsed = time.monotonic() - started
        print(f"{name}: {done}/{rows} rows, {elapsed:.0f} s", file=sys.stderr)


def cache_key(rows: int) -> str:
    digest = hashlib.sha256(f"{SEED_VERSION}:{rows}:{SEED_REVISION}".encode())
    for path in sorted(MIGRATIONS.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return f"dashboard-{rows}-{digest.hexdigest()[:12]}"


def cached_sqlite(rows: int) -> tuple[Path, Seed]:
    """The cached seeded SQLite database for `rows` and these migrations, built if missing
    (older ones are removed: each takes about a gigabyte)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    key = cache_key(rows)
    path, meta = CACHE / f"{key}.sqlite3", CACHE / f"{key}.json"
    if path.exists() and meta.exists():
        return path, Seed(**json.loads(meta.read_text()))
    for old in CACHE.glob(f"dashboard-{rows}-*"):
        old.unlink()
    building = CACHE / f"{key}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    seed = seed_sqlite(building / "db.sqlite3", rows)
    # One self-contained file (no -wal beside it), to copy and to read from.
    connection = sqlite3.connect(building / "db.sqlite3")
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()
    (building / "db.sqlite3").rename(path)
    meta.write_text(json.dumps(asdict(seed), indent=2) + "\n")
    shutil.rmtree(building)
    return path, seed


# -- measuring ----------------------------------------------------------------------------
class Links(HTMLParser):
    """The page's CSRF token and its "Older" link (rel="next"), if it has them."""

    def __init__(self) -> None:
        super().__init__()
        self.csrf: str | None = None
        self.older: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") == "csrf_token":
            self.csrf = a.get("value")
        if tag == "a" and "next" in (a.get("rel") or "").split() and self.older is None:
            self.older = a.get("href")


def parse(page: str) -> Links:
    links = Links()
    links.feed(page)
    return links


def log_in(client: httpx.Client) -> None:
    """Log in as the owner through the log-in page; the client keeps the session cookie."""
    token = parse(client.get("/login").text).csrf
    response = client.post(
        "/login", data={"email": OWNER, "password": PASSWORD, "csrf_token": token or ""}
    )
    if response.status_code != 302:
        raise RuntimeError(f"log-in failed: {response.status_code} {response.text[:300]}")
    check = client.get("/forms")
    if check.status_code != 200:
        raise RuntimeError(f"/forms after log-in: {check.status_code}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def timed(client: httpx.Client, url: str, n: int, warmup: int = 3) -> dict[str, Any]:
    """`n` requests for `url`, one at a time, after `warmup` ones: status and latencies."""
    for _ in range(warmup):
        response = client.get(url)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return {
        "url": url,
        "status": response.status_code,
        "bytes": len(response.content),
        "p50_ms": statistics.median(times),
        "p95_ms": percentile(times, 95),
        "max_ms": max(times),
        "requests": n,
        "body": response.text,
    }


def measure_pages(client: httpx.Client, seed: Seed, n: int) -> dict[str, Any]:
    """/forms, the big form's first page, page 500, and the two searches."""
    key = seed.form_keys[0]
    out: dict[str, Any] = {}
    forms = timed(client, "/forms", n)
    forms["valid"] = forms["status"] == 200 and key in forms["body"]
    out["forms"] = forms
    first = timed(client, f"/forms/{key}", n)
    first["valid"] = first["status"] == 200
    out["first_page"] = first

    # Page 500 by following "Older" from the first page, as an owner paging back would.
    url, walked, walk_ms = f"/forms/{key}", 1, []
    older = parse(first["body"]).older if first["valid"] else None
    walk_started = time.monotonic()
    while older and walked < DEEP_PAGE and time.monotonic() - walk_started < WALK_BUDGET_S:
        url = urljoin(url, older.replace("&amp;", "&"))
        started = time.perf_counter()
        response = client.get(url)
        walk_ms.append((time.perf_counter() - started) * 1000)
        walked += 1
        older = parse(response.text).older if response.status_code == 200 else None
    if walked == DEEP_PAGE or (older and walked > 1):
        deep = timed(client, url, n)
        deep["valid"] = deep["status"] == 200 and walked == DEEP_PAGE
    else:
        deep = {"valid": False, "url": url}
    deep["reached_page"] = walked
    if walk_ms:
        deep["walk_p95_ms"] = percentile(walk_ms, 95)
    if walked < DEEP_PAGE:
        why = "no Older link" if not older else f"{WALK_BUDGET_S:.0f} s spent walking"
        deep["note"] = f"{why} after page {walked}"
    out["page_500"] = deep

    for name, word, hits in (
        ("search_rare", seed.rare_word, seed.rare_hits),
        ("search_common", seed.common_word, seed.common_hits),
    ):
        result = timed(client, f"/forms/{key}?q={quote_plus(word)}", n)
        # A page that ignored q would show the newest submissions, almost none with the
        # word: besides the search box's value, the word must be on the page.
        shown = len(re.findall(rf"\b{word}\b", result["body"], re.IGNORECASE))
        result["valid"] = result["status"] == 200 and shown >= 2
        result["word"], result["submissions_with_it"] = word, hits
        if result["status"] == 200 and shown < 2:
            result["note"] = "the word is not on the page: search not applied?"
        out[name] = result
    for r in out.values():
        r.pop("body", None)
    return out


def measure_export(client: httpx.Client, web_pid: int, seed: Seed) -> dict[str, Any]:
    """Every submission as CSV (all forms; the big form's if there is no such page),
    counted as a CSV reader counts rows, with the web workers' RSS sampled every 50 ms."""
    peak = [0.0]
    idle = max((rss_mb(pid) for pid in children(web_pid)), default=0.0)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            for pid in children(web_pid):
                with contextlib.suppress(FileNotFoundError):  # a worker restarting
                    peak[0] = max(peak[0], rss_mb(pid))

    candidates = [
        ("/submissions/export.csv", seed.inbox_rows),
        (f"/forms/{seed.form_keys[0]}/export.csv", seed.big_form_inbox_rows),
    ]
    for url, expected in candidates:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        rows, size, status, first_byte = 0, 0, 0, 0.0
        try:
            with client.stream("GET", url, timeout=httpx.Timeout(120.0)) as response:
                status = response.status_code
                if status == 404:
                    continue  # try the next candidate (the finally stops this sampler)
                if status == 200:
                    total = [0]
                    reader = csv.reader(_lines(_counting(response.iter_bytes(), total)))
                    next(reader, None)  # the header
                    for _ in reader:
                        if not rows:
                            first_byte = time.perf_counter() - started
                        rows += 1
                        if not rows % 1000 and time.perf_counter() - started > EXPORT_BUDGET_S:
                            break  # the rate so far is the figure; the rest is not read
                    size = total[0]
        finally:
            elapsed = time.perf_counter() - started
            stop.set()
            sampler.join()
            stop.clear()
        return {
            "url": url,
            "status": status,
            "rows": rows,
            "expected_rows": expected,
            "seconds": elapsed,
            "first_row_s": first_byte,
            "rows_per_s": rows / elapsed if elapsed else 0.0,
            # After the first row: the rate once the export streams.
            "streaming_rows_per_s": rows / (elapsed - first_byte) if rows else 0.0,
            "megabytes": size / 1e6,
            "idle_web_worker_rss_mb": idle,
            "peak_web_worker_rss_mb": peak[0],
            "complete": rows == expected,
            # Stopped at the budget, the rate over those rows stands; short otherwise, not.
            "valid": status == 200 and (rows == expected or elapsed >= EXPORT_BUDGET_S),
            **({} if rows == expected else {"note": f"{rows} rows read, {expected} expected"}),
        }
    return {"valid": False, "note": "no export page (404)"}


def _counting(chunks: Iterable[bytes], total: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        total[0] += len(chunk)
        yield chunk


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text lines ending in "\n" (as the csv module wants them, quoted line breaks and
    all) from UTF-8 byte chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    for chunk in chunks:
        parts = (rest + decoder.decode(chunk)).split("\n")
        rest = parts.pop()
        for part in parts:
            yield part + "\n"
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


def like_scan(db: Database, seed: Seed) -> dict[str, float]:
    """The anchor to beat: Formlander's search, LIKE over the JSON column (a full scan of
    the form's rows for a rare word), first page; milliseconds, the better of two."""
    from sqlalchemy import create_engine, text

    from formrelay.settings import normalize_database_url

    engine = create_engine(normalize_database_url(db.url, Path(".")))
    cast = "CAST(fields AS TEXT)" if db.name == "postgresql" else "fields"
    query = text(
        f"SELECT id FROM submissions WHERE form_id = 1 AND is_spam = :spam AND {cast} LIKE :pattern"
        " ORDER BY created_at DESC, id DESC LIMIT 20"
    )
    out = {}
    with engine.connect() as conn:
        for name, word in (("rare", seed.rare_word), ("common", seed.common_word)):
            times = []
            for _ in range(2):
                started = time.perf_counter()
                conn.execute(query, {"spam": False, "pattern": f"%{word}%"}).all()
                times.append((time.perf_counter() - started) * 1000)
            out[f"like_{name}_ms"] = min(times)
    engine.dispose()
    return out


def ingest_with_and_without_index(
    db: Database, workdir: Path, seconds: int, turns: int
) -> dict[str, Any]:
    """The ingest bench's peak (wrk, 32 connections, the worker draining beside it) with
    the search index kept current and with it switched off, in turns, beside the bare
    endpoint's ceiling: the index must cost at most 10% of the ratio."""
    rps: dict[str, list[float]] = {"on": [], "off": []}
    with MailSink().running() as mail:
        stack = Stack(workdir, db, mail)
        endpoint = stack.prepare()
        url = endpoint.replace(stack.env["FORMRELAY_BASE_URL"], f"http://127.0.0.1:{stack.port}")
        try:
            stack.start_web("bench.bare:app")
            ceiling = wrk(url, seconds, 32, workdir)["rps"]
            stack.stop()
            for turn in range(turns):
                # off, on, on, off, ...: a drift through the run (the database grows)
                # weighs on both alike.
                for mode in ("off", "on") if turn % 2 == 0 else ("on", "off"):
                    stack.env[SEARCH_INDEX_SETTING] = mode
                    stack.start_web()
                    stack.start_worker()
                    wrk(url, 1, 32, workdir)  # warm up
                    rps[mode].append(wrk(url, seconds, 32, workdir)["rps"])
                    stack.stop()
        finally:
            stack.stop()
    on, off = statistics.mean(rps["on"]), statistics.mean(rps["off"])
    return {
        "ceiling_rps": ceiling,
        "with_index_rps": rps["on"],
        "without_index_rps": rps["off"],
        "ratio_with_index": on / ceiling,
        "ratio_without_index": off / ceiling,
        "ratio_vs_off": on / off,
        "setting": SEARCH_INDEX_SETTING,
    }


# What the field-names list adds to a group commit: batches like ingest's, committed with
# services.field_names.record and with it replaced by a no-op, in turns.
FIELD_NAMES_BATCHES = 300
FIELD_NAMES_BATCH_SIZE = 20


def field_names_cost(db: Database, instance: Path, turns: int) -> dict[str, Any]:
    """Seconds per batch of FIELD_NAMES_BATCH_SIZE submissions stored as ingest stores them
    (search.insert_submissions, one durable commit each), with the field names kept and
    without, on a scratch copy of the schema; the same few names every time, as a form's
    traffic sends (a new name is rare and costs one row more). Off: field_names.record
    replaced by a no-op.

    The target is its share: the time spent inside field_names.record (its statement, or
    nothing at all on PostgreSQL once the names are known) over the time the batches took,
    with it on. The on/off wall and CPU times are reported beside it: their difference is
    within what the commits' fsyncs vary by on a shared machine (tens of percent)."""
    from formrelay import create_app
    from formrelay.extensions import db as sqlalchemy
    from formrelay.services import accounts, field_names, forms, search
    from formrelay.settings import normalize_database_url

    url = normalize_database_url(db.url, instance)
    migrate(url, instance, "head")
    app = create_app(
        {"database_url": url, "instance_path": instance, "secret_key": "bench"}, migrations=False
    )
    per_batch: dict[str, list[float]] = {"on": [], "off": []}
    cpu_per_batch: dict[str, list[float]] = {"on": [], "off": []}
    record = field_names.record
    inside = [0.0]  # seconds spent in record, with it on

    def timed_record(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            record(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - started

    with app.app_context():
        session = sqlalchemy.session
        owner = accounts.create_user(session, "cost@bench.example")
        form_id = forms.create_form(session, owner, name="Cost", recipients=[]).id
        session.commit()
        fields = [
            ["name", "Ann Example"],
            ["email", "ann@example.org"],
            ["phone", "+44 20 7946 0000"],
            ["subject", "A question"],
            ["message", "Hello, I would like to know more about your services. " * 4],
        ]
        row = {"form_id": form_id, "fields": fields, "cc": [], "is_spam": False}
        try:
            for turn in range(turns):
                for mode in ("off", "on") if turn % 2 == 0 else ("on", "off"):
                    field_names.record = timed_record if mode == "on" else (lambda *_: None)  # type: ignore[assignment]
                    started, cpu = time.perf_counter(), time.process_time()
                    for _ in range(FIELD_NAMES_BATCHES):
                        with sqlalchemy.engine.begin() as connection:
                            now = datetime.now(UTC)
                            batch = [{**row, "created_at": now}] * FIELD_NAMES_BATCH_SIZE
                            search.insert_submissions(connection, batch)
                    per_batch[mode].append((time.perf_counter() - started) / FIELD_NAMES_BATCHES)
                    cpu_per_batch[mode].append((time.process_time() - cpu) / FIELD_NAMES_BATCHES)
        finally:
            field_names.record = record  # type: ignore[assignment]
            sqlalchemy.engine.dispose()
    on, off = statistics.median(per_batch["on"]), statistics.median(per_batch["off"])
    cpu_on, cpu_off = (statistics.median(cpu_per_batch[m]) for m in ("on", "off"))
    return {
        "batch_ms_on": on * 1000,
        "batch_ms_off": off * 1000,
        "wall_ratio_vs_off": on / off,
        "batch_cpu_ms_on": cpu_on * 1000,
        "batch_cpu_ms_off": cpu_off * 1000,
        "cpu_ratio_vs_off": cpu_on / cpu_off,
        "share_of_batch": inside[0] / (sum(per_batch["on"]) * FIELD_NAMES_BATCHES),
    }


def bench_database(
    name: str, rows: int, workdir: Path, seconds: int, requests: int, turns: int
) -> dict[str, Any]:
    """Seed (or take from the cache) one database, then measure it."""
    cached, seed = cached_sqlite(rows)
    if name == "sqlite":
        copy = workdir / "dashboard.sqlite3"
        shutil.copyfile(cached, copy)  # the server writes (the log-in, ingest): not the cache
        db = Database("sqlite", f"sqlite:///{copy}")
    else:
        maybe = Database.postgresql("formrelay_dashboard")
        if maybe is None:
            return {"skipped": "PostgreSQL not available"}
        db = maybe
    try:
        if name == "postgresql":
            seed = seed_postgresql(db.url, cached, seed, workdir / "instance")
        out: dict[str, Any] = {"seed": asdict(seed)}
        with MailSink().running() as mail:
            stack = Stack(workdir, db, mail)
            try:
                web = stack.start_web()
                base = f"http://127.0.0.1:{stack.port}"
                with httpx.Client(base_url=base, timeout=60) as client:
                    log_in(client)
                    out["pages"] = measure_pages(client, seed, requests)
                    out["export"] = measure_export(client, web.pid, seed)
            finally:
                stack.stop()
        out["anchor"] = like_scan(db, seed)
        out["ingest"] = ingest_with_and_without_index(db, workdir, seconds, turns)
        scratch = Database.sqlite(workdir / "scratch") if name == "sqlite" else None
        if scratch is not None:
            (workdir / "scratch").mkdir()
        else:
            scratch = Database.postgresql("formrelay_field_names")
        if scratch is not None:
            try:
                out["field_names"] = field_names_cost(scratch, workdir / "instance", 2 * turns)
            finally:
                scratch.drop()
        return out
    finally:
        db.drop()


def run(
    report: dict[str, Any],
    workdir: Path,
    *,
    databases: Iterable[str] = ("sqlite", "postgresql"),
    rows: int = ROWS,
    seconds: int = 10,
    requests: int = 40,
    turns: int = 2,
) -> None:
    """The dashboard section: report["dashboard"][database] for each database."""
    out = report.setdefault("dashboard", {})
    for name in databases:
        sub = workdir / f"dashboard-{name}"
        sub.mkdir()
        started = time.monotonic()
        out[name] = bench_database(name, rows, sub, seconds, requests, turns)
        out[name]["seconds"] = time.monotonic() - started


def targets(report: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    """One row per figure, as bench/run.py prints them: a missing page is a MISS (nan)."""
    rows: list[tuple[str, float, str, bool]] = []

    def target(db: str, name: str, r: dict[str, Any], key: str) -> None:
        goal, ok = GOALS[name]
        value = float(r.get(key, float("nan"))) if r.get("valid", True) else float("nan")
        rows.append((f"dashboard_{db}_{name}", value, goal, value == value and ok(value)))

    for db, r in report.get("dashboard", {}).items():
        if "skipped" in r:
            continue
        pages = r["pages"]
        for page in ("forms", "first_page", "page_500", "search_rare", "search_common"):
            target(db, f"{page}_p95_ms", pages[page], "p95_ms")
            if pages[page].get("valid"):
                rows.append(
                    (f"dashboard_{db}_{page}_p50_ms", pages[page]["p50_ms"], "report", True)
                )
        target(db, "export_rows_per_s", r["export"], "rows_per_s")
        target(db, "export_peak_web_worker_rss_mb", r["export"], "peak_web_worker_rss_mb")
        for name, value in r["anchor"].items():
            rows.append((f"dashboard_{db}_anchor_{name}", value, "report", True))
        ingest = r["ingest"]
        rows.append(
            (f"dashboard_{db}_ingest_ratio_with_index", ingest["ratio_with_index"], "report", True)
        )
        rows.append(
            (
                f"dashboard_{db}_ingest_ratio_without_index",
                ingest["ratio_without_index"],
                "report",
                True,
            )
        )
        target(db, "search_index_ingest_ratio_vs_off", ingest, "ratio_vs_off")
        if "field_names" in r:
            cost = r["field_names"]
            for key in ("batch_ms_on", "batch_ms_off", "wall_ratio_vs_off"):
                rows.append((f"dashboard_{db}_field_names_{key}", cost[key], "report", True))
            rows.append(
                (
                    f"dashboard_{db}_field_names_batch_cpu_ms_off",
                    cost["batch_cpu_ms_off"],
                    "report",
                    True,
                )
            )
            rows.append(
                (
                    f"dashboard_{db}_field_names_cpu_ratio_vs_off",
                    cost["cpu_ratio_vs_off"],
                    "report",
                    True,
                )
            )
            target(db, "field_names_share_of_batch", cost, "share_of_batch")
        seed = r["seed"]
        rows.append((f"dashboard_{db}_seed_s", seed["seed_seconds"], "report", True))
        rows.append((f"dashboard_{db}_later_migrations_s", seed["migrate_seconds"], "report", True))
    return rows


def notes(report: dict[str, Any]) -> list[str]:
    """Why a figure is missing: a page not there yet, a search that was not applied."""
    out = []
    for db, r in report.get("dashboard", {}).items():
        if "skipped" in r:
            out.append(f"dashboard_{db}: {r['skipped']}")
            continue
        for name, page in [*r["pages"].items(), ("export", r["export"])]:
            if not page.get("valid", True):
                status = page.get("status", "-")
                out.append(f"dashboard_{db} {name}: {page.get('note', '')} (status {status})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--rows", type=int, default=ROWS, help="submissions to seed")
    parser.add_argument("--quick", action="store_true", help="shorter ingest runs, fewer requests")
    parser.add_argument(
        "--seed-only", action="store_true", help="build the SQLite cache, measure nothing"
    )
    args = parser.parse_args()
    if args.seed_only:
        print(cached_sqlite(args.rows)[0])
        return
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="formrelay-dashboard-") as tmp:
        run(
            report,
            Path(tmp),
            databases=args.db.split(","),
            rows=args.rows,
            seconds=4 if args.quick else 10,
            requests=15 if args.quick else 40,
            turns=1 if args.quick else 2,
        )
    print(json.dumps(report, indent=2, default=str))
    for line in notes(report):
        print(f"NOTE {line}")
    for name, value, goal, _ in targets(report):
        if goal == "report":
            print(f"INFO {name} {value:.3f}")
    for name, value, goal, ok in targets(report):
        if goal != "report":
            print(f"TARGET {name} {value:.3f} {goal} {'PASS' if ok else 'MISS'}")


if __name__ == "__main__":
    main()
