"""Submissions: per form and across forms, search, detail, spam, delete, retry."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ...db import begin_write
from ...extensions import db
from ...models import MAX_ID, Form
from ...services import exports, inbox, permissions, ses_events
from ...services.errors import InvalidInput, NotFound
from ...services.inbox import DELIVERY_STATES
from ..templating import viewer_zone

bp = Blueprint("submissions", __name__)

PAGE_SIZE = 50
FOLDERS = ("inbox", "spam")
MAX_SELECTED = 500


@bp.get("/forms/<key>")
@login_required
def form(key: str) -> str:
    """One form's submissions."""
    found = permissions.load_form(db.session(), current_user, key)
    return _list_page(found)


@bp.get("/submissions", endpoint="all")
@login_required
def all_forms() -> str:
    """The submissions of every form the actor may see."""
    return _list_page(None)


def _list_page(found: Form | None) -> str:
    filters = _filters()
    f = exports.filter_from_params(request.args, form=found, zone=viewer_zone())
    shown = inbox.page(
        db.session(),
        current_user,
        f,
        older=request.args.get("older") or None,
        newer=request.args.get("newer") or None,
        size=PAGE_SIZE,
    )
    here = {**(request.view_args or {}), **{k: v for k, v in filters.items() if v}}
    return render_template(
        "dashboard/submissions.html",
        form=found,
        filters=filters,
        page=shown,
        delivery_states=DELIVERY_STATES,
        newer=url_for(request.endpoint or "", **here, newer=shown.newer) if shown.newer else None,
        older=url_for(request.endpoint or "", **here, older=shown.older) if shown.older else None,
        here=here,
    )


def _filters() -> dict[str, str]:
    """The list's filters from the query string, as its links carry them on (checked by
    exports.filter_from_params)."""
    args = request.args
    filters = {
        "q": args.get("q", "").strip(),
        "folder": args.get("folder", "") or "inbox",
        "since": args.get("since", "").strip(),
        "until": args.get("until", "").strip(),
        "delivery": args.get("delivery", "").strip(),
    }
    if filters["folder"] == "inbox":
        filters["folder"] = ""  # the default: kept out of the links
    return filters


@bp.get("/submissions/<int:submission_id>")
@login_required
def detail(submission_id: int) -> str:
    submission = permissions.load_submission(db.session(), current_user, submission_id)
    reported = ses_events.events_by_delivery(db.session(), [d.id for d in submission.deliveries])
    return render_template(
        "dashboard/submission.html",
        submission=submission,
        retryable=DELIVERY_STATES,
        reported=reported,
        describe_event=ses_events.describe_event,
    )


@bp.post("/submissions/<int:submission_id>/spam")
@login_required
def mark_spam(submission_id: int) -> Response:
    return _mark(submission_id, spam=True)


@bp.post("/submissions/<int:submission_id>/not-spam")
@login_required
def mark_not_spam(submission_id: int) -> Response:
    return _mark(submission_id, spam=False)


def _mark(submission_id: int, *, spam: bool) -> Response:
    session = _writer()
    submission = permissions.load_submission(session, current_user, submission_id)
    created = inbox.mark_spam(session, submission, spam)
    session.commit()
    if spam:
        flash("Moved to spam.", "success")
    elif created:
        flash(f"Moved to the inbox; {_count(len(created), 'notification')} queued.", "success")
    else:
        flash("Moved to the inbox.", "success")
    return redirect(url_for(".detail", submission_id=submission_id), 303)


@bp.route("/submissions/<int:submission_id>/delete", methods=["GET", "POST"])
@login_required
def delete(submission_id: int) -> Response | str:
    """A confirmation page (GET), then the deletion (POST)."""
    if request.method == "GET":
        submission = permissions.load_submission(db.session(), current_user, submission_id)
        return render_template(
            "dashboard/submissions_confirm.html",
            heading="Delete this submission?",
            message="It is deleted with its delivery log. This cannot be undone.",
            action=url_for(".delete", submission_id=submission_id),
            ids=[],
            button="Delete",
            cancel=url_for(".detail", submission_id=submission_id),
        )
    session = _writer()
    submission = permissions.load_submission(session, current_user, submission_id)
    key = submission.form.key
    inbox.delete_submissions(session, current_user, [submission_id])
    session.commit()
    flash("Submission deleted.", "success")
    return redirect(url_for(".form", key=key), 303)


@bp.post("/submissions/delete")
@login_required
def delete_selected() -> Response | str:
    """Delete the submissions ticked in a list: asks first unless `confirmed` is sent (the
    list's script-free path; with the script on, the list's button asks already)."""
    try:
        ids = sorted({int(v) for v in request.form.getlist("id")})
    except ValueError:
        raise InvalidInput("The selection is not valid.") from None
    if ids and not 1 <= ids[0] <= ids[-1] <= MAX_ID:
        raise NotFound("There is no such submission.")  # no row can have this id
    if not ids:
        raise InvalidInput("Select at least one submission.")
    if len(ids) > MAX_SELECTED:
        raise InvalidInput(f"Select at most {MAX_SELECTED} submissions at a time.")
    back = _safe_back(request.form.get("back"))
    if not request.form.get("confirmed"):
        for ident in ids:  # 404 before asking about what the actor may not see
            permissions.load_submission(db.session(), current_user, ident)
        return render_template(
            "dashboard/submissions_confirm.html",
            heading=f"Delete {_count(len(ids), 'submission')}?",
            message="They are deleted with their delivery logs. This cannot be undone.",
            action=url_for(".delete_selected"),
            ids=ids,
            back=back,
            button="Delete",
            cancel=back,
        )
    session = _writer()
    deleted = inbox.delete_submissions(session, current_user, ids)
    session.commit()
    flash(f"{_count(deleted, 'submission')} deleted.", "success")
    return redirect(back, 303)


@bp.route("/forms/<key>/spam/empty", methods=["GET", "POST"], endpoint="empty_form_spam")
@bp.route("/submissions/spam/empty", methods=["GET", "POST"])
@login_required
def empty_spam(key: str | None = None) -> Response | str:
    """Delete every spam submission of one form (or of all the actor's): asks first (GET)."""
    found = permissions.load_form(db.session(), current_user, key) if key else None
    back = url_for(".form", key=key, folder="spam") if key else url_for(".all", folder="spam")
    if request.method == "GET":
        where = f"of {found.name}" if found else "of all your forms"
        return render_template(
            "dashboard/submissions_confirm.html",
            heading="Empty the spam folder?",
            message=f"Every submission in the spam folder {where} is deleted. "
            "This cannot be undone.",
            action=request.path,
            ids=[],
            button="Empty spam",
            cancel=back,
        )
    session = _writer()
    found = permissions.load_form(session, current_user, key) if key else None
    deleted = inbox.empty_spam(session, current_user, found)
    session.commit()
    flash(f"Spam emptied: {_count(deleted, 'submission')} deleted.", "success")
    return redirect(back, 303)


@bp.post("/deliveries/<int:delivery_id>/retry")
@login_required
def retry(delivery_id: int) -> Response:
    session = _writer()
    delivery = permissions.load_delivery(session, current_user, delivery_id)
    inbox.retry_delivery(session, delivery)
    submission_id = delivery.submission_id
    session.commit()
    flash(f"Delivery to {delivery.target} is due again now.", "success")
    if submission_id is None:  # the dashboard's own mail: an admin's
        return redirect(url_for("forms.index"), 303)
    return redirect(url_for(".detail", submission_id=submission_id), 303)


def _writer() -> Session:
    """The request's session as a writer from the start. Signing in read the user already:
    that reading transaction ends first, or SQLite could refuse the write."""
    session = db.session()
    session.commit()
    begin_write(session)
    return session


def _safe_back(target: str | None) -> str:
    """Where to go after a bulk action: a path of ours, or the list of all submissions."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for(".all")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
