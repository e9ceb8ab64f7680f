from email.message import EmailMessage

from formrelay.extensions import db
from formrelay.models import Delivery, Submission
from formrelay.worker import make_worker

from .factories import make_form
from .mailserver import SENDER


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


def test_smtp_server_receives_the_notification(smtp_config, app, client, smtp_server):
    form = make_form(db.session)
    r = client.post(f"/f/{form.key}", data={"name": "Ann", "message": "hello"})
    assert r.status_code == 303

    assert [o.status for o in make_worker(app).drain()] == ["sent"]

    [received] = smtp_server.received
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ["owner@example.com"])
    message = received.message
    assert message["To"] == "owner@example.com"
    assert message["Subject"] == "[formrelay] New submission: Contact"
    text = message.get_body(("plain",))
    assert isinstance(text, EmailMessage)
    assert "name:\n    Ann\n\nmessage:\n    hello\n" in text.get_content().replace("\r\n", "\n")
