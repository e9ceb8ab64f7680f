"""Downloads of what a submissions page shows: CSV and JSON, streamed.

The page's own query string (folder, since, until, q) says what is exported, so "Export"
links only append it to these addresses.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, request
from flask_login import current_user, login_required
from sqlalchemy import Engine

from ...extensions import db
from ...models import utcnow
from ...services import exports, permissions
from ...services.inbox import SubmissionFilter
from ...settings import get_settings
from ..files import attachment_disposition
from ..templating import viewer_zone

bp = Blueprint("exports", __name__)

# Content types, charset included (as `content_type`: werkzeug adds a charset to a text
# `mimetype` of its own, and the CSV said it twice).
CONTENT_TYPES: dict[exports.Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json; charset=utf-8",
}


@bp.get("/forms/<key>/export.csv", defaults={"fmt": "csv"})
@bp.get("/forms/<key>/export.json", defaults={"fmt": "json"})
@login_required
def form_export(key: str, fmt: exports.Format) -> Response:
    form = permissions.load_form(db.session(), current_user, key)
    f = exports.filter_from_params(request.args, form=form, zone=viewer_zone())
    return _download(f, fmt)


@bp.get("/submissions/export.csv", defaults={"fmt": "csv"})
@bp.get("/submissions/export.json", defaults={"fmt": "json"})
@login_required
def all_export(fmt: exports.Format) -> Response:
    """Every form the user may see (an admin: every form)."""
    f = exports.filter_from_params(request.args, zone=viewer_zone())
    return _download(f, fmt)


def _download(f: SubmissionFilter, fmt: exports.Format) -> Response:
    # Built now, while the actor and the form are loaded: the queries bind their ids.
    export = exports.export_query(current_user, f)
    engine: Engine = db.engine
    # The export reads on a connection of its own, in one snapshot from the header to the
    # last row; the request's session is done, so its connection goes back to the pool
    # now rather than after the last byte. The generator needs no request context.
    db.session.rollback()
    stream = _stream(engine, export, fmt, get_settings().base_url)
    response = Response(stream, content_type=CONTENT_TYPES[fmt])
    name = exports.filename(f, fmt, utcnow().date())
    response.headers["Content-Disposition"] = attachment_disposition(name)
    response.headers["Cache-Control"] = "no-store"  # submissions are private
    return response


def _stream(
    engine: Engine, export: exports.ExportQuery, fmt: exports.Format, base_url: str
) -> Iterator[bytes]:
    with exports.reading(engine) as session:
        yield from exports.export_chunks(session, export, fmt, base_url=base_url)
