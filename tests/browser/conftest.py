"""Fixtures for the browser tests: formrelay live on one port, the test site on another, Chromium.

Two servers on two ports make every request from a test page cross-origin, so Chromium sends
real CORS preflights and enforces the answers, as it does for a site on another host. The
Formspree clients are the published npm packages (tests/js, installed by scripts/ensure-test-deps);
the React example is bundled with esbuild once per session.

A missing Chromium or missing npm packages skip the tests that need them, with the reason;
when CI is set they fail instead, so that CI never passes by testing nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from formrelay.extensions import db
from formrelay.models import Submission

from ..conftest import SQLiteDatabases

REPO = Path(__file__).resolve().parents[2]
JS_DIR = REPO / "tests" / "js"
NODE_MODULES = JS_DIR / "node_modules"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 5_000
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(available: bool, reason: str) -> None:
    """Skip the test when a part is missing; fail instead under CI."""
    if available:
        return
    if _in_ci():
        pytest.fail(f"{reason} (CI is set: a missing part is a failure)", pytrace=False)
    pytest.skip(reason)


# -- servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # LiveServer.seen keeps what the tests need; no access log in failure output


class LiveServer:
    """A WSGI app served on 127.0.0.1 on a free port by a thread; `app` may change per test."""

    def __init__(self, app: Any = None) -> None:
        self.app = app
        self.seen: list[SeenRequest] = []
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._dispatch, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _dispatch(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.seen.append(
            SeenRequest(
                request.method, request.path, {k.lower(): v for k, v in request.headers.items()}
            )
        )
        app = self.app or Response("no app is being served", status=503)
        return app(environ, start_response)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class LiveFormrelay:
    """The formrelay app of the current test, served for real, and what it was sent."""

    url: str
    app: Flask
    seen: list[SeenRequest]

    def requests_to(self, path: str, method: str) -> list[SeenRequest]:
        return [r for r in self.seen if r.path == path and r.method == method]

    def submissions(self) -> list[Submission]:
        """The stored submissions, read in a fresh transaction (the server commits in its own)."""
        db.session.rollback()
        return list(db.session.scalars(select(Submission).order_by(Submission.id)))


@dataclass
class FormSite:
    """The site the forms live on: pages published by a test, plus the clients' scripts."""

    origin: str = ""
    pages: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, Path] = field(default_factory=dict)

    def publish(self, path: str, html: str) -> str:
        """Serve `html` at `path` and return its URL."""
        self.pages[path] = html
        return self.origin + path

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = Request(environ).path
        if path in self.pages:
            response = Response(self.pages[path], mimetype="text/html")
        elif path in self.scripts:
            response = Response(self.scripts[path].read_bytes(), mimetype="text/javascript")
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> SQLiteDatabases:
    """SQLite only: these tests check the wire protocol with real clients, not storage, and
    each backend run would double the browser time. tests/test_*.py cover PostgreSQL."""
    return SQLiteDatabases(tmp_path_factory.mktemp("sqlite-browser"))


@pytest.fixture(scope="session")
def formrelay_server() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


@pytest.fixture
def app_config(app_config: dict[str, object], formrelay_server: LiveServer) -> dict[str, object]:
    # Links and redirects that formrelay builds must point at the live server.
    return {**app_config, "base_url": formrelay_server.url}


@pytest.fixture
def formrelay(app: Flask, formrelay_server: LiveServer) -> Iterator[LiveFormrelay]:
    """The test's app, live on a real port (the factories still work in the test's context)."""
    formrelay_server.seen.clear()
    formrelay_server.app = app
    yield LiveFormrelay(formrelay_server.url, app, formrelay_server.seen)
    formrelay_server.app = None


@pytest.fixture(scope="session")
def site_server() -> Iterator[LiveServer]:
    with LiveServer(FormSite()) as server:
        server.app.origin = server.url
        yield server


@pytest.fixture
def site(site_server: LiveServer) -> FormSite:
    """The cross-origin site of the test, with no pages yet."""
    site: FormSite = site_server.app
    site.pages.clear()
    return site


# -- Formspree's clients -------------------------------------------------------------------


@pytest.fixture(scope="session")
def client_scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The clients' browser scripts by the path the test site serves them at."""
    require(
        (NODE_MODULES / "@formspree").is_dir(),
        "Formspree's npm packages are not installed: run scripts/ensure-test-deps "
        "(npm ci in tests/js)",
    )
    esbuild = NODE_MODULES / ".bin" / "esbuild"
    bundle = tmp_path_factory.mktemp("js") / "react-app.js"
    subprocess.run(
        [
            str(esbuild),
            str(JS_DIR / "react-app.jsx"),
            "--bundle",
            "--format=iife",
            '--define:process.env.NODE_ENV="production"',
            "--log-level=warning",
            f"--outfile={bundle}",
        ],
        cwd=JS_DIR,
        check=True,
        timeout=60,
    )
    return {
        "/vendor/formspree-ajax.js": NODE_MODULES / "@formspree/ajax/dist/global.js",
        "/vendor/formspree-core.mjs": NODE_MODULES / "@formspree/core/dist/index.mjs",
        "/vendor/react-app.js": bundle,
    }


@pytest.fixture
def client_site(site: FormSite, client_scripts: dict[str, Path]) -> FormSite:
    """The test site, also serving Formspree's client scripts under /vendor/."""
    site.scripts = client_scripts
    return site


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One Chromium for the session."""
    require(
        os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing: apt-get install chromium (scripts/ensure-test-deps does)",
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def page(
    browser: Browser, formrelay: LiveFormrelay, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh browser context and page (own cookies and CORS preflight cache).

    On failure the page's screenshot and console go to tests/artifacts/.
    """
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    yield page
    call = request.node.stash.get(_REPORTS, {}).get("call")
    if call is not None and call.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        try:
            page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        finally:
            (ARTIFACTS / f"{name}.console.txt").write_text(
                f"url: {page.url}\n" + "\n".join(console) + "\n"
            )
    context.close()
