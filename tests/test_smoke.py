from formrelay.extensions import db
from formrelay.models import Delivery, Submission

from .factories import make_form


def test_urlencoded_post_is_stored_and_delivered(client, worker, outbox):
    form = make_form(db.session)
    r = client.post(f"/f/{form.key}", data={"name": "Ann", "message": "hi"})
    assert r.status_code == 303
    assert db.session.scalars(db.select(Submission)).one().fields == [
        ["name", "Ann"],
        ["message", "hi"],
    ]
    assert [o.status for o in worker.drain()] == ["sent"]
    assert len(outbox.sent) == 1
    db.session.rollback()  # end the test's read snapshot to see the worker's commits
    assert db.session.scalars(db.select(Delivery)).one().status == "sent"
