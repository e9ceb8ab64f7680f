"""`formrelay submissions`, `export` and `import`: what forms received, in and out."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from flask.cli import AppGroup, with_appcontext

from ..extensions import db
from ..models import Submission
from ..services import exports, forms, imports, inbox
from ..services.errors import DomainError
from ..settings import get_settings
from .common import _fail, _session, _stamp, _submissions, _writing

SUMMARY_CHARS = 60  # of a submission's fields, in `submissions list`


@click.group("submissions", cls=AppGroup)
def submissions_group() -> None:
    """Read what forms received."""


@submissions_group.command("list")
@click.option("--form", "form_key", metavar="KEY", help="Only this form's submissions.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many to show, newest first.",
)
@click.option("--spam", is_flag=True, help="Show the submissions marked as spam instead.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@with_appcontext
def submissions_list(form_key: str | None, limit: int, spam: bool, as_json: bool) -> None:
    """List submissions, newest first, with the state of each delivery."""
    session = _session()
    try:
        only = forms.find_form(session, form_key) if form_key is not None else None
    except DomainError as exc:
        raise _fail(exc) from None
    rows = inbox.list_submissions(session, form=only, spam=spam, limit=limit)
    for s in rows:
        if as_json:
            record = inbox.submission_record(s, base_url=get_settings().base_url)
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo(_submission_line(s))
    if not rows and not as_json:
        click.echo(f"No {'spam' if spam else 'submissions'} yet.")
    db.session.rollback()


def _submission_line(s: Submission) -> str:
    """One line: id, time, form, the first fields, its files and where each delivery stands."""
    summary = "; ".join(f"{name}: {' '.join(value.split())}" for name, value in s.fields)
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 1] + "…"
    if s.is_spam:
        outcome = f"spam ({s.spam_reason})" if s.spam_reason else "spam"
    else:
        outcome = ", ".join(f"{d.target} {d.status}" for d in s.deliveries) or "nothing to send"
    files = f"  ({len(s.attachments)} file(s))" if s.attachments else ""
    return (
        f"{s.id}  {_stamp(s.created_at)}  {s.form.key}  {summary or '(empty)'}{files}  [{outcome}]"
    )


# -- export and import --------------------------------------------------------------------
@click.command("export")
@click.option("--form", "form_key", required=True, metavar="KEY", help="The form to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(exports.FORMATS),
    default="csv",
    show_default=True,
    help="CSV (one column per field) or JSON (the API's records).",
)
@click.option(
    "--output",
    default="-",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    help="The file to write (replaced only once complete); default: standard output.",
)
@click.option("--spam", is_flag=True, help="Export the spam folder instead of the inbox.")
@click.option("--since", metavar="DAY", help="Only from this day (YYYY-MM-DD, UTC) on.")
@click.option("--until", metavar="DAY", help="Only up to this day (YYYY-MM-DD, UTC), included.")
@click.option("--search", "q", metavar="TEXT", help="Only what this search finds.")
@with_appcontext
def export_command(
    form_key: str,
    fmt: exports.Format,
    output: str,
    spam: bool,
    since: str | None,
    until: str | None,
    q: str | None,
) -> None:
    """Export a form's submissions, newest first, as the dashboard's download does.

    CSV columns are id, time (ISO 8601, UTC) and every field name the form has received, in
    the order they first arrived; a name sent more than once joins its values with ", "; a
    cell starting with = + - @ or a tab or CR gets a leading ' so that spreadsheets show it
    rather than run it.
    A progress bar goes to standard error when it is a terminal."""
    session = _session()
    params = {"folder": "spam" if spam else "inbox", "since": since, "until": until, "q": q}
    try:
        found = forms.find_form(session, form_key)
        f = exports.filter_from_params({k: v for k, v in params.items() if v}, form=found)
    except DomainError as exc:
        raise _fail(exc) from None
    export = exports.export_query(None, f)
    db.session.rollback()
    written = 0

    def count(n: int) -> None:
        nonlocal written
        written += n

    with exports.reading(db.engine) as reading:
        total = exports.count(reading, export) if sys.stderr.isatty() else 0
        with (
            click.open_file(output, "wb", atomic=output != "-") as out,
            _progress(total, "Exporting", count) as progress,
        ):
            for chunk in exports.export_chunks(
                reading, export, fmt, progress, base_url=get_settings().base_url
            ):
                out.write(chunk)
    if output != "-":
        click.echo(f"Exported {_submissions(written)} of form {found.key} to {output}.")


@click.command("import")
@click.option("--form", "form_key", required=True, metavar="KEY", help="The form to import into.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option(
    "--time-column",
    metavar="NAME",
    help="The column holding each submission's time (default: the first of time, "
    "created_at, submitted_at, ..., date).",
)
@with_appcontext
def import_command(form_key: str, file: Path, time_column: str | None) -> None:
    """Import a CSV export (formrelay's, Formspree's, Netlify's, Basin's) as stored
    submissions of a form; nothing is delivered.

    Each column is a field, except the time, id-like columns (id, submission_id, uuid,
    form_id, form_name, site_url, site_id), which are skipped, and ip, user_agent and
    referrer, which are kept as the submission's metadata. Empty cells are left out. The
    file is checked first: a malformed row (wrong number of columns, a time that is not
    one, bytes that are not UTF-8, NUL) is reported by line number and nothing is
    imported; otherwise every row is, in one transaction."""
    session = _session()
    try:
        forms.find_form(session, form_key)
    except DomainError as exc:
        raise _fail(exc) from None
    db.session.rollback()
    with file.open("rb") as stream:
        try:
            with _progress(file.stat().st_size, "Checking", None) as read:
                checked = imports.check_file(stream, time_column=time_column, progress=read)
        except imports.ImportRefused as exc:
            raise click.ClickException(f"{file}: {exc.message}") from None
        session = _writing()
        found = forms.find_form(session, form_key)
        try:
            with _progress(checked.rows, "Importing", None) as stored:
                n = imports.import_file(
                    session, found, stream, time_column=time_column, progress=stored
                )
        except imports.ImportRefused as exc:
            db.session.rollback()
            raise click.ClickException(f"{file} changed while importing: {exc.message}") from None
        db.session.commit()
    layout = checked.layout
    click.echo(
        f"Imported {_submissions(n)} into form {found.name!r} (key {found.key}); nothing was "
        "delivered."
    )
    click.echo(f"Time from column {layout.header[layout.time_column]!r}.")
    click.echo("Fields: " + (", ".join(name for _, name in layout.fields) or "(none)"))
    if layout.skipped:
        click.echo("Skipped columns: " + ", ".join(layout.skipped))


@contextlib.contextmanager
def _progress(
    length: int, label: str, also: Callable[[int], None] | None
) -> Iterator[Callable[[int], None]]:
    """A progress callback: a bar on standard error when it is a terminal (and `length`
    is known), nothing otherwise; `also` is told every step as well."""

    def quiet(n: int) -> None:
        if also is not None:
            also(n)

    if not length or not sys.stderr.isatty():
        yield quiet
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:

        def step(n: int) -> None:
            bar.update(n)
            quiet(n)

        yield step
