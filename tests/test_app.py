"""The app factory's own parts."""

import os
import subprocess
import sys

from flask import Flask, session


def test_a_session_set_in_one_request_is_read_in_the_next(app: Flask) -> None:
    # Sessions are opened only for requests that bring the cookie (formrelay.CookieSessions).
    @app.get("/_count")
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert [client.get("/_count").text for _ in range(3)] == ["1", "2", "3"]
    client.set_cookie("session", "forged")
    assert client.get("/_count").text == "1"  # a cookie that does not verify is ignored
    assert app.test_client().get("/_count").text == "1"  # another browser starts afresh


def test_a_request_without_a_session_cookie_sets_none(app: Flask) -> None:
    response = app.test_client().get("/")
    assert "Set-Cookie" not in response.headers


def test_the_production_web_app_leaves_the_migration_tooling_out(tmp_path) -> None:
    # Alembic costs each web worker 11 MB; `formrelay db upgrade` (the release phase) has it.
    env = {
        **os.environ,
        "FORMRELAY_ENV": "production",
        "SECRET_KEY": "x",
        "DATABASE_URL": f"sqlite:///{tmp_path}/formrelay.sqlite3",
    }
    code = (
        "import sys, formrelay.wsgi; print(sorted({'alembic', 'flask_migrate'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout

    assert loaded.strip() == "[]"


def test_every_view_with_a_flask_limiter_limit_is_on_a_blueprint_that_runs_its_hooks(app):
    """Flask-Limiter's after_request (deductions of failed log-ins) runs on
    LIMITED_BLUEPRINTS only: a limited view elsewhere would lose them."""
    from flask_limiter.util import get_qualified_name

    from formrelay.extensions import limiter
    from formrelay.web.fastpath import LIMITED_BLUEPRINTS

    limited = {
        endpoint.split(".")[0]
        for endpoint, view in app.view_functions.items()
        if get_qualified_name(view) in limiter._marked_for_limiting
    }
    assert limited and limited <= set(LIMITED_BLUEPRINTS), limited
