"""Rate limits on POST /f/<key>: per client address per form, over all forms, in memory or
shared through Redis in one round trip per submission, and never a lost submission when
Redis is away. The client address, behind FORMRELAY_TRUSTED_PROXIES hops of proxies."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from formrelay.extensions import db
from formrelay.models import Delivery

from ..factories import make_form
from ..servers import free_port, wait_until, without_settings
from .shapes import BROWSER, assert_refused, post_json, stored

LIMITED = "Too many submissions from your address: wait a little, then send again."


def accepted(response) -> bool:
    return response.status_code == 200 and response.json["ok"] is True


def test_a_forms_own_limit_refuses_the_next_post_with_retry_after_in_both_shapes(client, app):
    form = make_form(db.session, rate_limit="2/minute")
    assert accepted(post_json(client, form.key, {"message": "1"}))
    assert accepted(post_json(client, form.key, {"message": "2"}))
    r = post_json(client, form.key, {"message": "3"})
    assert (r.status_code, r.json) == (
        429,
        {"ok": False, "error": LIMITED, "errors": [{"code": "RATE_LIMITED", "message": LIMITED}]},
    )
    assert 0 < int(r.headers["Retry-After"]) <= 60  # within the minute's window
    r = client.post(f"/f/{form.key}", data={"message": "4"}, headers={"Accept": BROWSER})
    assert (r.status_code, r.mimetype) == (429, "text/html")
    assert LIMITED in r.text and "Retry-After" in r.headers
    assert len(stored()) == 2
    # Another form, another address: their own counts.
    other = make_form(db.session, rate_limit="2/minute")
    assert accepted(post_json(client, other.key, {"message": "1"}))
    r = client.post(
        f"/f/{form.key}", json={"message": "5"}, environ_base={"REMOTE_ADDR": "203.0.113.9"}
    )
    assert accepted(r)


def test_refused_posts_count_and_a_reached_limit_answers_429_before_anything_else(client, app):
    form = make_form(db.session, rate_limit="3/minute")
    bad_next = {"message": "hi", "_next": "javascript:alert(1)"}
    assert post_json(client, form.key, bad_next).status_code == 400  # counted: 1
    too_big = "x" * (200 * 1024)
    assert post_json(client, form.key, {"message": too_big}).status_code == 413  # 2
    assert accepted(post_json(client, form.key, {"message": "fine"}))  # 3, stored
    # Past the limit, whatever the post: a flood learns nothing but to wait.
    for data in ({"message": "fine"}, bad_next, {"message": too_big}):
        assert post_json(client, form.key, data).status_code == 429
    assert len(stored()) == 1


def test_the_submissions_of_one_batch_are_counted_together_in_order(app):
    # Group commit counts a batch in one call: of five at once against 2/minute, two are
    # stored and three refused, as if they had come one by one.
    import threading

    key = make_form(db.session, rate_limit="2/minute").key
    statuses: list[int] = []

    def post() -> None:
        with app.app_context():
            statuses.append(post_json(app.test_client(), key, {"message": "at once"}).status_code)

    threads = [threading.Thread(target=post) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 200, 429, 429, 429]
    assert len(stored()) == 2


@pytest.fixture
def app_config(app_config, request):
    return {**app_config, **getattr(request, "param", {})}


@pytest.mark.parametrize("app_config", [{"rate_limit": "1/minute"}], indirect=True)
def test_forms_without_a_limit_of_their_own_take_formrelay_rate_limit(client, app):
    form = make_form(db.session)
    assert accepted(post_json(client, form.key, {"message": "1"}))
    assert post_json(client, form.key, {"message": "2"}).status_code == 429


@pytest.mark.parametrize("app_config", [{"rate_limit_global": "3/minute"}], indirect=True)
def test_the_global_limit_counts_an_address_over_all_forms(client, app):
    forms = [make_form(db.session, name=f"F{i}") for i in range(4)]
    for form in forms[:3]:
        assert accepted(post_json(client, form.key, {"message": "hi"}))
    assert_refused(client, forms[3].key, {"message": "hi"}, 429, "RATE_LIMITED", LIMITED)


def test_gets_and_the_other_pages_are_not_counted(client, app):
    form = make_form(db.session, rate_limit="1/minute")
    for _ in range(3):
        assert client.get(f"/f/{form.key}").status_code == 405
        assert client.options(f"/f/{form.key}").status_code == 200
    assert accepted(post_json(client, form.key, {"message": "1"}))


# -- the client's address and proxies ----------------------------------------------------------
@pytest.mark.parametrize(
    ("app_config", "forwarded", "seen"),
    [
        # No proxy trusted: a client-sent X-Forwarded-For is never believed.
        ({}, "198.51.100.7", "127.0.0.1"),
        ({"trusted_proxies": 1}, "10.9.9.9, 198.51.100.7", "198.51.100.7"),
        ({"trusted_proxies": 2}, "10.9.9.9, 198.51.100.7, 192.0.2.1", "198.51.100.7"),
        # Fewer hops than trusted: ProxyFix believes none of them.
        ({"trusted_proxies": 2}, "198.51.100.7", "127.0.0.1"),
    ],
    indirect=["app_config"],
)
def test_the_client_address_is_the_one_the_trusted_hops_report(client, app, forwarded, seen):
    form = make_form(db.session, rate_limit="1/minute")
    r = client.post(f"/f/{form.key}", json={"m": "1"}, headers={"X-Forwarded-For": forwarded})
    assert accepted(r)
    assert stored()[-1].remote_addr == seen


def test_a_spoofed_forwarded_for_does_not_escape_the_limit(client, app):
    form = make_form(db.session, rate_limit="1/minute")
    assert accepted(post_json(client, form.key, {"m": "1"}, X_Forwarded_For="192.0.2.1"))
    r = post_json(client, form.key, {"m": "2"}, X_Forwarded_For="192.0.2.2")
    assert r.status_code == 429


@pytest.mark.parametrize("app_config", [{"trusted_proxies": 1}], indirect=True)
def test_behind_a_trusted_proxy_each_client_has_its_own_count(client, app):
    form = make_form(db.session, rate_limit="1/minute")
    assert accepted(post_json(client, form.key, {"m": "1"}, X_Forwarded_For="192.0.2.1"))
    assert accepted(post_json(client, form.key, {"m": "2"}, X_Forwarded_For="192.0.2.2"))
    assert post_json(client, form.key, {"m": "3"}, X_Forwarded_For="192.0.2.2").status_code == 429


# -- Redis ---------------------------------------------------------------------------------------
class RedisServer:
    """A redis-server of the test's own on a free port (the machine's stays untouched)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), 10, lambda: "redis-server did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_app_config(app_config, own_redis):
    return {**app_config, "ratelimit_storage_uri": own_redis.url}


@pytest.mark.parametrize("app_config", [{}], indirect=True)
def test_redis_stopped_mid_test_still_accepts_every_submission(
    app_config, own_redis, caplog, tmp_path
):
    from formrelay import create_app

    # With an hourly ceiling, group commit counts notifications in the same Redis.
    config = {**app_config, "ratelimit_storage_uri": own_redis.url, "notify_limit_per_form": 100}
    app = create_app(config)
    client = app.test_client()
    with app.app_context():
        form = make_form(db.session, rate_limit="3/minute", max_links=5)
        for n in range(2):
            assert accepted(post_json(client, form.key, {"message": str(n)}))
        caplog.set_level(logging.WARNING)
        own_redis.stop()
        # Redis is gone: each process counts for itself from here on, and nothing is lost.
        answers = [post_json(client, form.key, {"message": f"after {n}"}) for n in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert len(stored()) == 5
        # Once, not per request: the limits and the ceilings count in the same counters.
        outage = sorted(r.name for r in caplog.records if "unreachable" in r.getMessage())
        assert outage == ["formrelay.counters"], [r.getMessage() for r in caplog.records]
        # And the notifications were all queued, counted in this process meanwhile.
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 5
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize(
    "app_config",
    [{"rate_limit_global": "1000/minute;10000/hour;100000/day", "notify_limit_per_form": 0}],
    indirect=True,
)
def test_a_submission_is_counted_in_every_window_with_one_redis_command(app_config, own_redis):
    """Five windows (the form's two, the address's three over all forms), one round trip:
    Flask-Limiter would make one per window, and each costs the hot path."""
    import redis

    from formrelay import create_app

    app = create_app({**app_config, "ratelimit_storage_uri": own_redis.url})
    client = app.test_client()
    server = redis.Redis(port=own_redis.port)
    with app.app_context():
        form = make_form(db.session, rate_limit="3/minute;500/day")
        assert accepted(post_json(client, form.key, {"message": "0"}))  # loads the script
        server.config_resetstat()
        for n in range(1, 3):
            assert accepted(post_json(client, form.key, {"message": str(n)}))
        calls = {
            name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in server.info("commandstats").items()
            if not name.startswith(("cmdstat_info", "cmdstat_config"))
        }
        # The script's own commands are counted too; what came over the network is one
        # EVALSHA per submission.
        sent = {name: n for name, n in calls.items() if name not in ("incrby", "expire")}
        assert (sent, calls["incrby"]) == ({"evalsha": 2}, 10), calls
        # Each window has its own count, and the form's first window refuses the fourth.
        counts = sorted(int(server.get(k)) for k in server.keys("*public*"))
        assert counts == [3, 3, 3, 3, 3]
        r = post_json(client, form.key, {"message": "3"})
        assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 60
        db.session.remove()
        db.engine.dispose()


def test_a_redis_limit_is_shared_by_two_app_processes(database_url, tmp_path):
    """Two `formrelay serve` processes, one Redis (the machine's, a db of this test's own):
    the form's 3 a minute hold over both together."""
    from formrelay import create_app

    redis_url = "redis://127.0.0.1:6379/13"
    app = create_app(
        {"database_url": database_url, "instance_path": tmp_path / "i", "secret_key": "s"}
    )
    with app.app_context():
        form = make_form(db.session, rate_limit="3/minute")
        key = form.key
        db.session.remove()
        db.engine.dispose()
    env = {
        **without_settings(os.environ),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "s",
        "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"),
        "RATELIMIT_STORAGE_URI": redis_url,
        "FORMRELAY_NOTIFY_LIMIT_PER_FORM": "0",
        "FORMRELAY_NOTIFY_LIMIT_GLOBAL": "0",
    }
    formrelay = str(Path(sys.executable).parent / "formrelay")
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [formrelay, "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for port in ports
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            wait_until(partial(_answers, url), 30, partial(str, f"{url} did not start"))
        order = [0, 1, 0, 1, 0]
        statuses = [
            httpx.post(
                f"{urls[i]}/f/{key}",
                json={"message": f"{n} {secrets.token_hex(2)}"},
                headers={"Accept": "application/json"},
                timeout=10,
            ).status_code
            for n, i in enumerate(order)
        ]
        assert statuses == [200, 200, 200, 429, 429]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_a_redis_that_stops_answering_delays_a_submission_by_a_second_at_most(app_config):
    """A Redis behind a dropped network: the connection opens, nothing ever answers."""
    import socket
    import time

    from formrelay import create_app

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the handshakes; nobody reads
    try:
        port = silent.getsockname()[1]
        app = create_app({**app_config, "ratelimit_storage_uri": f"redis://127.0.0.1:{port}/0"})
        client = app.test_client()
        with app.app_context():
            form = make_form(db.session, rate_limit="100/minute")
            started = time.monotonic()
            answers = [post_json(client, form.key, {"message": str(n)}) for n in range(3)]
            elapsed = time.monotonic() - started
            assert [r.status_code for r in answers] == [200, 200, 200]
            assert elapsed < 4  # one timeout, then this process counts for itself
            assert len(stored()) == 3
            db.session.remove()
            db.engine.dispose()
    finally:
        silent.close()
