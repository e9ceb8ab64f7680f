"""The fast paths of web/fastpath.py: each still needed by the libraries installed, and each
still giving what the library would have given without it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import flask.app
import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from flask_limiter import Limiter

from formrelay.extensions import db, limiter
from formrelay.web import fastpath

from ..auth import post_form
from ..conftest import BASE_URL
from ..factories import make_form, make_user
from .shapes import post_json

# -- ensure_sync ---------------------------------------------------------------------------------


@pytest.fixture
def coroutine_questions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Each function Flask's ensure_sync asks inspect.iscoroutinefunction about."""
    asked: list[object] = []
    real = flask.app.iscoroutinefunction  # where Flask looks it up: gone, and this fails

    def counted(func: object) -> bool:
        asked.append(func)
        return real(func)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counted)
    yield asked


def view() -> str:
    return "sync"


async def coroutine_view() -> str:
    return "async"


class Unhashable:
    __hash__ = None  # type: ignore[assignment]

    def __call__(self) -> str:
        return "called"


def _outcome(ensure_sync: Callable[[Any], Any], func: object) -> object:
    """What ensure_sync gives for `func`: the callable, or the kind of error it raises."""
    try:
        return ensure_sync(func)
    except Exception as exc:
        return type(exc)


def test_flask_ensure_sync_keeps_the_signature_the_app_overrides() -> None:
    def parameters(method: Callable[..., Any]) -> list[tuple[str, object]]:
        return [(p.name, p.kind) for p in inspect.signature(method).parameters.values()]

    assert [name for name, _ in parameters(Flask.ensure_sync)] == ["self", "func"]
    assert parameters(fastpath.App.ensure_sync) == parameters(Flask.ensure_sync)


def test_flask_asks_again_on_every_call_and_the_app_remembers_what_it_answered(
    coroutine_questions: list[object],
) -> None:
    plain, ours = Flask(__name__), fastpath.App(__name__)
    plain.ensure_sync(view)
    plain.ensure_sync(view)
    assert coroutine_questions == [view, view]  # Flask does not remember: the patch is needed
    coroutine_questions.clear()

    first, again = ours.ensure_sync(view), ours.ensure_sync(view)
    assert first is again is view
    assert coroutine_questions == [view]


@pytest.mark.parametrize(
    "func",
    [view, coroutine_view, functools.partial(view), Unhashable(), Flask(__name__).make_response],
    ids=["function", "coroutine", "partial", "unhashable", "bound method"],
)
def test_the_app_gives_what_flask_gives_every_time(func: object) -> None:
    plain, ours = Flask(__name__), fastpath.App(__name__)
    flasks = _outcome(plain.ensure_sync, func)
    for _ in range(2):
        given = _outcome(ours.ensure_sync, func)
        if inspect.isclass(flasks):  # an error (async views need Flask's async extra)
            assert given is flasks
        elif flasks is func:
            assert given is func
        else:  # a wrapper around a coroutine, made afresh by Flask each time
            assert callable(given) and given.__wrapped__ is func  # type: ignore[attr-defined]


def test_a_submission_asks_nothing_once_its_views_and_hooks_are_known(
    app: Flask, client: FlaskClient, coroutine_questions: list[object]
) -> None:
    form = make_form(db.session)
    assert post_json(client, form.key, {"message": "first"}).status_code == 200
    coroutine_questions.clear()
    assert post_json(client, form.key, {"message": "second"}).status_code == 200
    assert coroutine_questions == []


# -- Flask-Limiter's hooks -----------------------------------------------------------------------


def _limiter_hooks(app: Flask, own: Limiter, blueprint: str | None = None) -> list[list[object]]:
    """Flask-Limiter's hooks (`own`'s) among the app's, or a blueprint's, of each kind."""

    def of(hook: object) -> bool:
        bound = getattr(hook, "__self__", None) or (getattr(hook, "args", None) or (None,))[0]
        return bound is own

    funcs = (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
    return [[f for f in kind.get(blueprint, []) if of(f)] for kind in funcs]


def test_flask_limiter_still_hooks_every_request_and_install_confines_all_its_hooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bare, own = Flask(__name__), Limiter(lambda: "everyone", storage_uri="memory://")
    own.init_app(bare)
    before, after, teardown = _limiter_hooks(bare, own)
    # The hook that install removes is still the one Flask-Limiter adds, app-wide.
    assert before == [own._check_request_limit]
    assert len(after) == len(teardown) == 1
    assert bare.before_request_funcs[None] == before  # nothing else to keep or lose

    monkeypatch.setattr(fastpath, "limiter", own)
    fastpath.confine_limiter_hooks(bare)
    assert _limiter_hooks(bare, own) == [[], [], []]
    for blueprint in fastpath.LIMITED_BLUEPRINTS:
        assert _limiter_hooks(bare, own, blueprint) == [[], after, teardown]


def test_the_app_has_no_limit_that_the_removed_hook_would_count(app: Flask) -> None:
    # Default, application and blueprint limits are counted only by the before_request
    # hook: with any of them, removing it would drop them silently.
    assert _limiter_hooks(app, limiter) == [[], [], []]
    manager = limiter.limit_manager
    assert manager.default_limits == []
    assert manager.application_limits == []
    assert not manager._blueprint_limits


def test_a_forms_limit_of_n_still_admits_n_posts_and_refuses_the_next(
    app: Flask, client: FlaskClient
) -> None:
    form = make_form(db.session, rate_limit="3/minute")
    statuses = [post_json(client, form.key, {"message": str(n)}).status_code for n in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_failed_log_ins_are_still_counted_by_flask_limiter(app: Flask, client: FlaskClient) -> None:
    # Only refused log-ins count (the after_request hook deducts them): five, then a 429.
    make_user(db.session, email="owner@example.com")
    db.session.commit()
    wrong = {"email": "owner@example.com", "password": "not the password"}
    statuses = [post_form(client, "/login", wrong).status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429]


# -- the thanks page's URL ------------------------------------------------------------------------


@pytest.mark.parametrize("root", ["", "/relay", "/a/b"])
def test_the_remembered_thanks_path_is_url_fors_for_each_root_path(app: Flask, root: str) -> None:
    for asked in ("", root, root):  # the root path first, then `root`, remembered
        with app.test_request_context("/f/key", base_url=f"http://localhost{asked}"):
            assert fastpath.thanks_path() == url_for("main.thanks") == f"{asked}/thanks"


def test_url_for_is_asked_once_per_root_path(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def counted(endpoint: str) -> str:
        asked.append(endpoint)
        return url_for(endpoint)

    monkeypatch.setattr(fastpath, "url_for", counted)
    for root in ("", "/relay", "", "/relay"):
        with app.test_request_context("/f/key", base_url=f"http://localhost{root}"):
            fastpath.thanks_path()
    assert asked == ["main.thanks"] * 2


def test_an_app_without_the_fast_path_asks_url_for() -> None:
    plain = Flask(__name__)
    plain.add_url_rule("/merci", "main.thanks", view)
    with plain.test_request_context("/", base_url="http://localhost/relay"):
        assert fastpath.thanks_path() == "/relay/merci"


def test_a_submission_under_a_script_name_is_sent_to_that_roots_thanks_page(
    app: Flask, client: FlaskClient
) -> None:
    form = make_form(db.session)
    for root in ("", "/relay"):
        r = client.post(f"/f/{form.key}", data={"m": "hi"}, base_url=f"http://localhost{root}")
        assert (r.status_code, r.headers["Location"]) == (303, f"{BASE_URL}{root}/thanks")
