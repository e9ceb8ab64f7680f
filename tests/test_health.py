"""/healthz and /readyz, and `formrelay worker status`: what a platform or a monitor asks."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from click.testing import Result
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskCliRunner
from sqlalchemy import update

from formrelay import create_app
from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import Delivery, WorkerHeartbeat, utcnow
from formrelay.worker import WorkerIdentity, make_worker

from .factories import make_form
from .mailserver import free_port
from .servers import ROOT


def beating(*, ago: float = 1.0, host: str = "worker-1.internal") -> WorkerHeartbeat:
    """A registered worker whose last beat was `ago` seconds ago."""
    identity = WorkerIdentity(host=host, pid=4242)
    row = WorkerHeartbeat(
        id=identity.id,
        host=host,
        pid=4242,
        started_at=utcnow() - timedelta(hours=1),
        heartbeat_at=utcnow() - timedelta(seconds=ago),
    )
    db.session.add(row)
    db.session.commit()
    return row


def a_delivery_due_since(client, seconds: float) -> None:
    form = make_form(db.session)
    assert client.post(f"/f/{form.key}", data={"message": "hi"}).status_code == 303
    db.session.execute(
        update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=seconds))
    )
    db.session.commit()


def test_healthz_says_the_process_is_up(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"ok": True})


def test_dokkus_checks_in_app_json_ask_healthz_and_readyz(client):
    """Dokku runs the startup check at each deploy (its default scheduler runs only that
    type): a new web container must answer it with no worker yet, so it asks /healthz."""
    checks = json.loads((ROOT / "app.json").read_text())["healthchecks"]
    paths = {check["type"]: check["path"] for check in checks["web"]}
    assert paths == {"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}
    assert client.get(paths["startup"]).status_code == 200


def test_readyz_is_ready_with_a_worker_alive_and_nothing_late(client):
    beating(ago=2)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "ok": True,
        "checks": {
            "database": {"ok": True},
            "workers": {"ok": True, "alive": 1},
            "outbox": {"ok": True, "due": 0, "sending": 0, "oldest_due_seconds": None},
        },
    }
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("last_beat", [None, 60.0])
def test_readyz_is_not_ready_without_a_live_worker(client, last_beat):
    if last_beat is not None:
        beating(ago=last_beat)  # past the 15 s grace: dead
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["ok"] is False
    assert response.json["checks"]["workers"] == {"ok": False, "alive": 0}


def test_readyz_is_not_ready_when_a_delivery_has_waited_too_long(client):
    beating()
    a_delivery_due_since(client, 301)
    response = client.get("/readyz")
    assert response.status_code == 503
    outbox = response.json["checks"]["outbox"]
    assert (outbox["ok"], outbox["due"]) == (False, 1)
    assert 301 <= outbox["oldest_due_seconds"] < 320


def test_readyz_says_nothing_secret(client):
    beating(host="secret-host.internal")
    a_delivery_due_since(client, 5)
    text = client.get("/readyz").get_data(as_text=True)
    assert "secret-host" not in text and "owner@example.com" not in text and "4242" not in text


def test_readyz_is_not_ready_when_the_database_is_away(tmp_path):
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/formrelay"
    app = create_app({"database_url": nowhere, "instance_path": tmp_path, "secret_key": "k"})
    response = app.test_client().get("/readyz", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert response.json == {
        "ok": False,
        "checks": {"database": {"ok": False, "error": "the database cannot be reached"}},
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_answer_get_only(client, path):
    assert client.post(path).status_code == 405


# -- formrelay worker status -----------------------------------------------------------------
def worker_status(app: Flask, runner: FlaskCliRunner) -> Result:
    info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
    return runner.invoke(cli, ["worker", "status"], obj=info)


def test_worker_status_lists_the_workers_and_the_outbox(app, client, runner):
    alive = beating(ago=2, host="worker-1.internal")
    dead = beating(ago=600, host="worker-2.internal")
    a_delivery_due_since(client, 90)

    result = worker_status(app, runner)

    assert result.exit_code == 0, result.output
    first, second, summary = result.output.splitlines()
    assert first.startswith(f"alive  {alive.id}  host worker-1.internal pid 4242  started ")
    assert re.search(r"  last beat 2\.\d s ago$", first)
    assert second.startswith(f"dead   {dead.id}  host worker-2.internal pid 4242")
    assert second.endswith("last beat 10 min ago")
    assert summary.startswith(
        "1 alive of 2 registered; deliveries due 1, sending 0, retries scheduled 0; oldest due for "
    )


def test_worker_status_fails_when_no_worker_is_alive(app, runner):
    result = worker_status(app, runner)
    assert result.exit_code == 1
    assert result.output == (
        "No worker has registered: start one with `formrelay worker`.\n"
        "0 alive of 0 registered; deliveries due 0, sending 0, retries scheduled 0; "
        "oldest due for -\n"
    )


def test_a_running_worker_shows_as_alive_and_is_gone_once_stopped(app, runner):
    worker = make_worker(app)
    worker.heartbeat.start()
    try:
        result = worker_status(app, runner)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"alive  {worker.identity.id}  ")
    finally:
        worker.heartbeat.stop()
    assert worker_status(app, runner).exit_code == 1
