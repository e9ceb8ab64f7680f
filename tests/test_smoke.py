from formrelay.extensions import db
from formrelay.models import Delivery, Submission

from .factories import make_form


def test_urlencoded_post_is_stored_and_delivered(client, worker, outbox):
    form = make_form(db.session)
    r = client.post(f"/f/{form.key}", data={"name": "Ann", "message": "hi"})
    assert r.status_code == 303
    submission = db.session.scalars(db.select(Submission)).one()
    assert submission.fields == [["name", "Ann"], ["message", "hi"]]
    assert [o.status for o in worker.drain()] == ["sent"]
    assert len(outbox.sent) == 1
    db.session.rollback()  # end the test's read snapshot to see the worker's commits
    assert db.session.scalars(db.select(Delivery)).one().status == "sent"


def test_smtp_server_receives_the_notification(smtp_config, app, client):
    from formrelay.worker import make_worker

    from .mailserver import MailServer  # noqa: F401

    form = make_form(db.session)
    client.post(f"/f/{form.key}", data={"message": "hello"})
    assert [o.status for o in make_worker(app).drain()] == ["sent"]
