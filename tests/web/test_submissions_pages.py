"""The submissions pages: lists, search, detail, spam, delete, retry; who may see what."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from formrelay.extensions import db
from formrelay.models import Delivery, DeliveryStatus, Form, Submission, User, utcnow
from formrelay.web.dashboard import submissions as pages
from formrelay.worker import Worker

from ..auth import AuthActions, csrf_token, post_form
from ..factories import make_delivery, make_form, make_submission, make_user
from ..fakes import RecordingBackend

ANN, BOB, ADMIN = "ann@example.com", "bob@example.com", "admin@example.com"


@pytest.fixture
def ann(app: Flask) -> User:
    user = make_user(db.session, ANN, admin=False)
    db.session.commit()
    return user


@pytest.fixture
def ann_form(ann: User) -> Form:
    return make_form(db.session, owner=ann, name="Ann's contact", recipients=[ANN])


@pytest.fixture
def bob(app: Flask) -> User:
    user = make_user(db.session, BOB, admin=False)
    db.session.commit()
    return user


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    return response.get_data(as_text=True)


def listed_ids(html: str) -> list[int]:
    """The submissions a list page shows, by their checkboxes, in order."""
    return [int(n) for n in re.findall(r'name="id" value="(\d+)"', html)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def count(model: type) -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


# Who may see what ---------------------------------------------------------------------


def routes(form: Form, submission: Submission, delivery: Delivery) -> dict[str, list[str]]:
    return {
        "GET": [
            f"/forms/{form.key}",
            "/submissions",
            f"/submissions/{submission.id}",
            f"/submissions/{submission.id}/delete",
            f"/forms/{form.key}/spam/empty",
        ],
        "POST": [
            f"/submissions/{submission.id}/spam",
            f"/submissions/{submission.id}/not-spam",
            f"/submissions/{submission.id}/delete",
            "/submissions/delete",
            f"/forms/{form.key}/spam/empty",
            "/submissions/spam/empty",
            f"/deliveries/{delivery.id}/retry",
        ],
    }


@pytest.fixture
def owned(ann_form: Form) -> tuple[Form, Submission, Delivery]:
    submission = make_submission(db.session, ann_form, fields={"message": "ann's secret"})
    delivery = make_delivery(db.session, submission, status=DeliveryStatus.FAILED)
    return ann_form, submission, delivery


def test_every_page_asks_a_signed_out_visitor_to_log_in(
    client: FlaskClient, owned: tuple[Form, Submission, Delivery]
) -> None:
    every = routes(*owned)
    for path in every["GET"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    token = csrf_token(client, "/login")
    for path in every["POST"]:
        response = client.post(path, data={"csrf_token": token, "id": owned[1].id})
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    assert count(Submission) == 1


def test_another_users_submissions_do_not_exist_for_them(
    client: FlaskClient, auth: AuthActions, owned: tuple[Form, Submission, Delivery], bob: User
) -> None:
    _, submission, delivery = owned
    make_form(db.session, owner=bob, name="Bob's")
    auth.login(BOB)
    every = routes(*owned)
    # The lists across forms and Bob's own spam folder exist for him; the rest is Ann's.
    own = {"/submissions", "/submissions/spam/empty"}
    for path in every["GET"]:
        if path not in own:
            assert client.get(path).status_code == 404, path
    token = csrf_token(client, "/submissions")
    for path in every["POST"]:
        if path in own:
            continue
        response = client.post(
            path, data={"csrf_token": token, "id": submission.id, "confirmed": "1"}
        )
        assert response.status_code == 404, path
    # Nothing of Ann's changed, and Bob's own lists show nothing of hers.
    assert "ann&#39;s secret" not in text_of(client.get("/submissions"))
    assert "ann&#39;s secret" not in text_of(client.get("/submissions?q=secret"))
    db.session.rollback()
    kept = db.session.get(Submission, submission.id)
    assert kept is not None and not kept.is_spam
    assert db.session.get(Delivery, delivery.id).status == DeliveryStatus.FAILED  # type: ignore[union-attr]


def test_an_admin_sees_everyones_submissions(
    client: FlaskClient, auth: AuthActions, owned: tuple[Form, Submission, Delivery]
) -> None:
    make_user(db.session, ADMIN, admin=True)
    db.session.commit()
    auth.login(ADMIN)
    for path in routes(*owned)["GET"]:
        assert client.get(path).status_code == 200, path
    assert "ann&#39;s secret" in text_of(client.get("/submissions"))


def test_changes_without_their_csrf_token_are_refused(
    client: FlaskClient, auth: AuthActions, owned: tuple[Form, Submission, Delivery]
) -> None:
    auth.login(ANN)
    for path in routes(*owned)["POST"]:
        response = client.post(path, data={"id": owned[1].id, "confirmed": "1"})
        assert response.status_code == 400, path
        assert "CSRF" in text_of(response), path
    assert count(Submission) == 1


def test_the_nav_links_to_all_submissions(
    client: FlaskClient, auth: AuthActions, ann: User
) -> None:
    auth.login(ANN)
    assert 'href="/submissions"' in text_of(client.get("/forms"))


# Lists ----------------------------------------------------------------------------------


def test_pages_walk_newest_first_through_equal_timestamps_and_back(
    client: FlaskClient,
    auth: AuthActions,
    ann_form: Form,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pages, "PAGE_SIZE", 3)
    same = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
    ids = [
        make_submission(db.session, ann_form, fields={"n": str(n)}, created_at=same).id
        for n in range(7)
    ]
    newest = make_submission(db.session, ann_form, created_at=same + timedelta(seconds=1)).id
    expected = [newest, *reversed(ids)]
    auth.login(ANN)

    seen: list[list[int]] = []
    url: str | None = f"/forms/{ann_form.key}"
    while url:
        html = text_of(client.get(url))
        seen.append(listed_ids(html))
        url = link(html, "next")
        if seen[-1] and len(seen) > 1:
            assert link(html, "prev"), "an older page links back to newer ones"
    assert seen == [expected[0:3], expected[3:6], expected[6:8]]
    assert "OFFSET" not in url if url else True

    # And back up from the last page by its Newer links.
    html = text_of(client.get(f"/forms/{ann_form.key}"))
    last = link(text_of(client.get(link(html, "next"))), "next")
    assert last is not None
    html = text_of(client.get(last))
    back = link(html, "prev")
    assert back is not None
    html = text_of(client.get(back))
    assert listed_ids(html) == expected[3:6]
    html = text_of(client.get(link(html, "prev")))  # type: ignore[arg-type]
    assert listed_ids(html) == expected[0:3]
    assert link(html, "prev") is None


def test_all_submissions_lists_every_form_of_the_owner_only(
    client: FlaskClient, auth: AuthActions, ann: User, bob: User
) -> None:
    first = make_form(db.session, owner=ann, name="First", recipients=[ANN])
    second = make_form(db.session, owner=ann, name="Second", recipients=[ANN])
    a = make_submission(db.session, first, fields={"message": "to first"})
    b = make_submission(db.session, second, fields={"message": "to second"})
    make_submission(db.session, make_form(db.session, owner=bob), fields={"message": "bob's"})
    auth.login(ANN)
    html = text_of(client.get("/submissions"))
    assert listed_ids(html) == [b.id, a.id]
    assert "First" in html and "Second" in html and "bob&#39;s" not in html


def test_search_box_filters_by_words_phrases_prefixes_folder_and_dates(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    def at(day: int) -> datetime:
        return datetime(2026, 11, day, 12, tzinfo=UTC)

    quote = make_submission(
        db.session,
        ann_form,
        fields={"message": "Please send a quote for the roof"},
        created_at=at(3),
    )
    roofing = make_submission(
        db.session, ann_form, fields={"message": "Roofing question"}, created_at=at(10)
    )
    spam = make_submission(
        db.session, ann_form, fields={"message": "cheap roof pills"}, spam=True, created_at=at(4)
    )
    auth.login(ANN)
    page = f"/forms/{ann_form.key}"

    html = text_of(client.get(page))
    assert re.search(r'<label for="q">Search</label>', html)
    assert listed_ids(text_of(client.get(page, query_string={"q": "roof"}))) == [quote.id]
    assert listed_ids(text_of(client.get(page, query_string={"q": "roof*"}))) == [
        roofing.id,
        quote.id,
    ]
    assert listed_ids(text_of(client.get(page, query_string={"q": '"quote for the roof"'}))) == [
        quote.id
    ]
    assert listed_ids(text_of(client.get(page, query_string={"q": '"roof for"'}))) == []
    assert listed_ids(text_of(client.get(page, query_string={"q": "roof", "folder": "spam"}))) == [
        spam.id
    ]
    in_range = {"q": "roof*", "since": "2026-11-01", "until": "2026-11-05"}
    assert listed_ids(text_of(client.get(page, query_string=in_range))) == [quote.id]
    # The filters stay in the box, and in the page links (bookmarkable).
    html = text_of(client.get(page, query_string={"q": '"a <b>"'}))
    assert 'value="&#34;a &lt;b&gt;&#34;"' in html or 'value="&quot;a &lt;b&gt;&quot;"' in html
    assert "No submissions match." in html


@pytest.mark.parametrize("q", ['"', "*", "NEAR(", ":", "&|!", "a:*", "'", "\\", "(((", "x" * 2000])
def test_adversarial_searches_answer_a_page(
    client: FlaskClient, auth: AuthActions, ann_form: Form, q: str
) -> None:
    make_submission(db.session, ann_form, fields={"message": "hello"})
    auth.login(ANN)
    assert client.get(f"/forms/{ann_form.key}", query_string={"q": q}).status_code == 200
    assert client.get("/submissions", query_string={"q": q}).status_code == 200


def test_failed_and_dead_deliveries_are_a_filter(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    failed = make_submission(db.session, ann_form)
    make_delivery(db.session, failed, status=DeliveryStatus.FAILED)
    dead = make_submission(db.session, ann_form)
    make_delivery(db.session, dead, status=DeliveryStatus.DEAD)
    make_delivery(db.session, make_submission(db.session, ann_form), status=DeliveryStatus.SENT)
    auth.login(ANN)
    page = f"/forms/{ann_form.key}"
    assert listed_ids(text_of(client.get(page, query_string={"delivery": "failed"}))) == [failed.id]
    assert listed_ids(text_of(client.get("/submissions", query_string={"delivery": "dead"}))) == [
        dead.id
    ]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"folder": "trash"}, "folder must be inbox or spam"),
        ({"since": "yesterday"}, "since must be a day"),
        ({"until": "2026-13-01"}, "until must be a day"),
        ({"delivery": "sent"}, "delivery must be one of failed, dead"),
        ({"older": "not-a-cursor"}, "This page link is not valid"),
        ({"newer": "AAAA"}, "This page link is not valid"),
    ],
)
def test_bad_filters_are_refused_saying_which(
    client: FlaskClient, auth: AuthActions, ann_form: Form, query: dict[str, str], says: str
) -> None:
    auth.login(ANN)
    response = client.get(f"/forms/{ann_form.key}", query_string=query)
    assert response.status_code == 400
    assert says in text_of(response)
    response = client.get(
        "/submissions", query_string=query, headers={"Accept": "application/json"}
    )
    assert response.status_code == 400
    assert says in response.get_json()["error"]


# Ingest keeps the index ---------------------------------------------------------------


def test_a_submission_sent_to_the_endpoint_is_found_by_search(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    response = client.post(
        f"/f/{ann_form.key}",
        data={"email": "carol@example.net", "message": "Marmalade order\nfor the shop"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    auth.login(ANN)
    page = f"/forms/{ann_form.key}"
    (stored,) = listed_ids(text_of(client.get(page, query_string={"q": "marmalade"})))
    assert listed_ids(text_of(client.get(page, query_string={"q": "carol@example.net"}))) == [
        stored
    ]
    assert listed_ids(text_of(client.get(page, query_string={"q": "sho*"}))) == [stored]
    assert listed_ids(
        text_of(client.get("/submissions", query_string={"q": '"for the shop"'}))
    ) == [stored]


@pytest.fixture
def unindexed(app_config: dict[str, object]) -> dict[str, object]:
    app_config["search_index"] = False
    return app_config


def test_with_the_index_off_ingest_stores_but_search_does_not_find(
    unindexed: dict[str, object], client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    client.post(
        f"/f/{ann_form.key}", data={"message": "marmalade"}, headers={"Accept": "application/json"}
    )
    auth.login(ANN)
    page = f"/forms/{ann_form.key}"
    assert len(listed_ids(text_of(client.get(page)))) == 1
    assert listed_ids(text_of(client.get(page, query_string={"q": "marmalade"}))) == []


# Detail ---------------------------------------------------------------------------------


def test_detail_shows_fields_in_order_metadata_and_the_delivery_log(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    submission = make_submission(
        db.session,
        ann_form,
        fields=[("zeta", "last name first"), ("alpha", "line one\nline two"), ("zeta", "again")],
        remote_addr="203.0.113.9",
        user_agent="Mozilla/5.0 (Test)",
        referrer="https://site.example/contact",
        origin="https://site.example",
    )
    make_delivery(
        db.session,
        submission,
        status=DeliveryStatus.DEAD,
        attempts=13,
        last_error="550 mailbox unavailable",
    )
    auth.login(ANN)
    html = text_of(client.get(f"/submissions/{submission.id}"))
    names = re.findall(r"<dt>(zeta|alpha)</dt>", html)
    assert names == ["zeta", "alpha", "zeta"]
    assert '<dd class="value">line one\nline two</dd>' in html
    for shown in (
        "203.0.113.9",
        "Mozilla/5.0 (Test)",
        "https://site.example/contact",
        "550 mailbox unavailable",
        ANN,
        "dead",
        "13",
    ):
        assert shown in html, shown
    assert "<time datetime=" in html
    assert "Retry now" in html


def test_retry_now_makes_a_dead_delivery_due_again_keeping_its_attempts(
    client: FlaskClient, auth: AuthActions, ann_form: Form, worker: Worker, outbox: RecordingBackend
) -> None:
    submission = make_submission(db.session, ann_form)
    later = utcnow() + timedelta(days=1)
    delivery = make_delivery(
        db.session,
        submission,
        status=DeliveryStatus.DEAD,
        attempts=13,
        next_attempt_at=later,
        last_error="boom",
    )
    auth.login(ANN)
    detail = f"/submissions/{submission.id}"
    response = post_form(client, detail, action=f"/deliveries/{delivery.id}/retry")
    assert response.status_code == 303
    assert response.headers["Location"] == detail
    db.session.rollback()
    again = db.session.get(Delivery, delivery.id)
    assert again is not None
    assert (again.status, again.attempts) == ("pending", 13)
    assert again.next_attempt_at is not None and again.next_attempt_at < utcnow() + timedelta(
        seconds=5
    )
    assert "is due again now" in text_of(client.get(detail))
    worker.drain()
    assert [m["To"] for m in outbox.sent] == [ANN]


def test_retry_now_refuses_a_delivery_that_is_not_failed_or_dead(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    delivery = make_delivery(
        db.session, make_submission(db.session, ann_form), status=DeliveryStatus.SENT
    )
    auth.login(ANN)
    response = post_form(client, "/submissions", action=f"/deliveries/{delivery.id}/retry")
    assert response.status_code == 409
    assert "only failed or dead ones are retried" in text_of(response)


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_hostile_values_are_escaped_on_the_list_and_the_detail(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    submission = make_submission(
        db.session,
        ann_form,
        fields={HOSTILE: HOSTILE, "message": HOSTILE},
        user_agent=HOSTILE,
        referrer=HOSTILE,
    )
    make_delivery(db.session, submission, status=DeliveryStatus.FAILED, last_error=HOSTILE)
    auth.login(ANN)
    for path in (
        f"/forms/{ann_form.key}",
        "/submissions",
        f"/submissions/{submission.id}",
        "/submissions?q=alert",
    ):
        html = text_of(client.get(path))
        assert "<script>alert" not in html, path
        assert "<img src=x" not in html, path
        assert "&lt;script&gt;" in html, path


# Spam, deleting -----------------------------------------------------------------------


def test_not_spam_creates_and_sends_the_skipped_notifications(
    client: FlaskClient, auth: AuthActions, ann_form: Form, worker: Worker, outbox: RecordingBackend
) -> None:
    submission = make_submission(db.session, ann_form, fields={"message": "real person"}, spam=True)
    auth.login(ANN)
    detail = f"/submissions/{submission.id}"
    assert "Not spam" in text_of(client.get(detail))
    response = post_form(client, detail, action=f"{detail}/not-spam")
    assert response.status_code == 303
    assert "1 notification queued" in text_of(client.get(detail))
    db.session.rollback()
    moved = db.session.get(Submission, submission.id)
    assert moved is not None and not moved.is_spam
    assert [d.target for d in moved.deliveries] == [ANN]
    worker.drain()
    assert len(outbox.sent) == 1
    assert listed_ids(text_of(client.get(f"/forms/{ann_form.key}"))) == [submission.id]


def test_mark_spam_moves_a_submission_to_the_spam_folder(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    submission = make_submission(db.session, ann_form)
    auth.login(ANN)
    detail = f"/submissions/{submission.id}"
    assert post_form(client, detail, action=f"{detail}/spam").status_code == 303
    page = f"/forms/{ann_form.key}"
    assert listed_ids(text_of(client.get(page))) == []
    assert listed_ids(text_of(client.get(page, query_string={"folder": "spam"}))) == [submission.id]


def test_marking_spam_stops_unsent_deliveries_and_not_spam_starts_them_again(
    client: FlaskClient, auth: AuthActions, ann_form: Form, worker: Worker, outbox: RecordingBackend
) -> None:
    submission = make_submission(db.session, ann_form, fields={"message": "buy pills"})
    waiting = make_delivery(db.session, submission, status=DeliveryStatus.FAILED, attempts=2)
    sent = make_delivery(db.session, submission, status=DeliveryStatus.SENT, attempts=1)
    db.session.commit()
    auth.login(ANN)
    detail = f"/submissions/{submission.id}"

    assert post_form(client, detail, action=f"{detail}/spam").status_code == 303
    worker.drain()
    assert outbox.sent == []  # the retry that was due never goes out
    stopped = db.session.get(Delivery, waiting.id)
    assert stopped is not None and stopped.status == DeliveryStatus.DEAD
    assert stopped.last_error == "not sent: the submission was marked as spam"
    assert "marked as spam" in text_of(client.get(detail))  # the log says why

    assert post_form(client, detail, action=f"{detail}/not-spam").status_code == 303
    worker.drain()
    assert len(outbox.sent) == 1  # the stopped one, not a second copy of the sent one
    db.session.rollback()
    statuses = {d.id: d.status for d in db.session.scalars(select(Delivery))}
    assert statuses == {waiting.id: DeliveryStatus.SENT, sent.id: DeliveryStatus.SENT}


def test_delete_one_asks_first_then_deletes_it_and_its_search_entry(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    submission = make_submission(db.session, ann_form, fields={"message": "quokka sighting"})
    make_delivery(db.session, submission)
    auth.login(ANN)
    confirm = f"/submissions/{submission.id}/delete"
    html = text_of(client.get(confirm))
    assert "Delete this submission?" in html
    response = post_form(client, confirm)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/forms/{ann_form.key}"
    assert (count(Submission), count(Delivery)) == (0, 0)
    assert client.get(f"/submissions/{submission.id}").status_code == 404
    assert listed_ids(text_of(client.get("/submissions", query_string={"q": "quokka"}))) == []


def test_delete_selected_deletes_exactly_the_ticked_ones(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    keep = make_submission(db.session, ann_form, fields={"message": "keep"})
    drop = [
        make_submission(db.session, ann_form, fields={"message": f"drop {n}"}).id for n in range(2)
    ]
    auth.login(ANN)
    page = f"/forms/{ann_form.key}"
    token = csrf_token(client, page)
    asked = client.post("/submissions/delete", data={"csrf_token": token, "id": drop, "back": page})
    assert asked.status_code == 200
    assert "Delete 2 submissions?" in text_of(asked)
    assert count(Submission) == 3
    done = client.post(
        "/submissions/delete",
        data={"csrf_token": token, "id": drop, "back": page, "confirmed": "1"},
    )
    assert done.status_code == 303
    assert done.headers["Location"] == page
    html = text_of(client.get(page))
    assert "2 submissions deleted." in html
    assert listed_ids(html) == [keep.id]


def test_delete_selected_with_someone_elses_submission_deletes_nothing(
    client: FlaskClient, auth: AuthActions, ann_form: Form, bob: User
) -> None:
    mine = make_submission(db.session, ann_form)
    theirs = make_submission(db.session, make_form(db.session, owner=bob))
    auth.login(ANN)
    token = csrf_token(client, "/submissions")
    response = client.post(
        "/submissions/delete",
        data={"csrf_token": token, "id": [mine.id, theirs.id], "confirmed": "1"},
    )
    assert response.status_code == 404
    assert count(Submission) == 2


@pytest.mark.parametrize("ids", [[], ["x"]])
def test_delete_selected_needs_a_selection(
    client: FlaskClient, auth: AuthActions, ann_form: Form, ids: list[str]
) -> None:
    auth.login(ANN)
    token = csrf_token(client, "/submissions")
    response = client.post(
        "/submissions/delete", data={"csrf_token": token, "id": ids, "confirmed": "1"}
    )
    assert response.status_code == 400


def test_emptying_a_forms_spam_folder_deletes_its_spam_only(
    client: FlaskClient, auth: AuthActions, ann: User, ann_form: Form
) -> None:
    other = make_form(db.session, owner=ann, name="Other", recipients=[ANN])
    inbox = make_submission(db.session, ann_form)
    make_submission(db.session, ann_form, spam=True, fields={"message": "buy now"})
    make_submission(db.session, ann_form, spam=True)
    other_spam = make_submission(db.session, other, spam=True)
    auth.login(ANN)
    confirm = f"/forms/{ann_form.key}/spam/empty"
    assert "Empty the spam folder?" in text_of(client.get(confirm))
    response = post_form(client, confirm)
    assert response.status_code == 303
    assert "2 submissions deleted" in text_of(client.get(response.headers["Location"]))
    db.session.rollback()
    assert sorted(db.session.scalars(select(Submission.id))) == sorted([inbox.id, other_spam.id])
    assert (
        listed_ids(text_of(client.get("/submissions", query_string={"q": "buy", "folder": "spam"})))
        == []
    )


def test_emptying_all_spam_spares_other_owners(
    client: FlaskClient, auth: AuthActions, ann_form: Form, bob: User
) -> None:
    make_submission(db.session, ann_form, spam=True)
    bobs = make_submission(db.session, make_form(db.session, owner=bob), spam=True)
    auth.login(ANN)
    assert post_form(client, "/submissions/spam/empty").status_code == 303
    db.session.rollback()
    assert list(db.session.scalars(select(Submission.id))) == [bobs.id]
