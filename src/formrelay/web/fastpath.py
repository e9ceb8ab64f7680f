"""The request path's fast paths: the patches to Flask and Flask-Limiter that the public
endpoint's speed rests on, one each, with their figures in docs/performance.md#fast-paths.

Each has a test in tests/web/test_fastpath.py that fails when a library upgrade makes it
wrong or needless: keep both in step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request, url_for

from ..extensions import limiter

# The blueprints with views that carry a Flask-Limiter limit.
LIMITED_BLUEPRINTS = ("auth", "forms")

_THANKS_PATHS = "formrelay.thanks_paths"


class App(Flask):
    """Flask, remembering which of its views and hooks are coroutines.

    Flask asks again on every request, and the answer never changes
    (docs/performance.md#ensure-sync). A subclass, because overriding ensure_sync is the
    way Flask documents to change it.
    """

    _SYNC_REMEMBERED = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except (KeyError, TypeError):  # TypeError: unhashable, asked each time
            found = super().ensure_sync(func)
            if len(self._sync) < self._SYNC_REMEMBERED:
                with contextlib.suppress(TypeError):
                    self._sync[func] = found
            return found


def install(app: Flask) -> None:
    """Apply the fast paths that are not App's to `app`, once Flask-Limiter is set up on it."""
    confine_limiter_hooks(app)
    remember_thanks_paths(app)


def confine_limiter_hooks(app: Flask) -> None:
    """Run Flask-Limiter's request hooks only on the requests of LIMITED_BLUEPRINTS.

    Every limited view counts in its own decorator and no limit is app-wide, so its
    before_request hook has nothing to count, and its other hooks serve those views only
    (docs/performance.md#limiter-hooks).
    """
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    # The after_request hook deducts failed log-ins; the teardown hook resets its context.
    for hooks in (app.after_request_funcs, app.teardown_request_funcs):
        own = [f for f in hooks[None] if of_limiter(f)]
        hooks[None] = [f for f in hooks[None] if not of_limiter(f)]
        for blueprint in LIMITED_BLUEPRINTS:
            hooks.setdefault(blueprint, []).extend(own)


def of_limiter(hook: Any) -> bool:
    """Whether `hook` is one Flask-Limiter registered (a bound method or a partial)."""
    bound = getattr(hook, "__self__", None) or (getattr(hook, "args", None) or (None,))[0]
    return bound is limiter


def remember_thanks_paths(app: Flask) -> None:
    """Resolve the thanks page's path once per root path: it does not move
    (docs/performance.md#thanks-url)."""
    app.extensions[_THANKS_PATHS] = {}


def thanks_path() -> str:
    """url_for("main.thanks") for this request, remembered when the app has the fast path."""
    paths: dict[str, str] | None = current_app.extensions.get(_THANKS_PATHS)
    if paths is None:
        return url_for("main.thanks")
    root = request.script_root
    path = paths.get(root)
    if path is None:
        path = paths[root] = url_for("main.thanks")
    return path
