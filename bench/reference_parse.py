"""A reference for ingest: formrelay's own parsing and validation, and no storage.

POST /f/<key> reads the body, decodes it with formrelay's `parse_payload`, validates it with
`prepare_submission` and answers what formrelay answers a JSON client (200,
`{"ok": true, "next": ..., "id": n}`), served exactly as formrelay is. What it leaves out
is everything formrelay does beyond Flask and those two calls: the form's policy, the
limits, and storing the submission. bench/reference_commit.py adds the durable commit.
"""

from __future__ import annotations

import itertools
import os

from flask import Flask, Request, Response, jsonify, request

from formrelay.services.errors import SubmissionRejected
from formrelay.services.submissions import PreparedSubmission, SubmissionMeta, prepare_submission
from formrelay.web.payload import parse_payload

MAX_FIELDS = 200  # formrelay's default (FORMRELAY_MAX_FIELDS)
THANKS_URL = os.environ.get("FORMRELAY_BASE_URL", "") + "/thanks"


def prepare(req: Request) -> PreparedSubmission:
    """The request's submission, parsed and validated as formrelay does it.

    Raises SubmissionRejected when formrelay would refuse it (400).
    """
    body = req.get_data(cache=False)
    payload = parse_payload(req.content_type, body, max_fields=MAX_FIELDS)
    meta = SubmissionMeta(
        remote_addr=req.remote_addr,
        user_agent=req.headers.get("User-Agent"),
        referrer=req.headers.get("Referer"),
        origin=req.headers.get("Origin"),
    )
    return prepare_submission(payload.fields, meta)


def accepted(
    prepared: PreparedSubmission, submission_id: int, redirect: str | None = None
) -> Response:
    """formrelay's answer to a JSON client whose submission it stored."""
    next_url = prepared.next_url or redirect or THANKS_URL
    return jsonify({"ok": True, "next": next_url, "id": submission_id})


def rejected(exc: SubmissionRejected) -> tuple[Response, int]:
    errors = [{"code": e.code, "message": e.message, "field": e.field} for e in exc.errors]
    return jsonify({"ok": False, "error": str(exc), "errors": errors}), 400


app = Flask(__name__)
app.register_error_handler(SubmissionRejected, rejected)
_ids = itertools.count(1)


@app.post("/f/<key>")
def submit(key: str) -> Response:
    return accepted(prepare(request), next(_ids))
