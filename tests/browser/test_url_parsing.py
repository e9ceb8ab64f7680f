"""formrelay reads URLs as Chromium does: every row of tests/web/url_cases.py, parsed by
Chromium's own `new URL()`, gives the host and the URL that formrelay checks and sends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from formrelay.services.urls import has_scheme, host_of, http_url, local_path

from ..web.url_cases import LOGIN_LOCAL, OFF_SITE, ON_SITE, PAGE

PARSE = """([url, base]) => {
    try {
        const u = base === null ? new URL(url) : new URL(url, base);
        return {href: u.href, hostname: u.hostname, origin: u.origin,
                path: u.pathname + u.search + u.hash};
    } catch (e) {
        return null;
    }
}"""
HERE = "https://forms.example/login"


@pytest.fixture(scope="module")
def blank(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def chromium(page: Page, url: str, base: str | None) -> dict[str, str] | None:
    parsed: dict[str, str] | None = page.evaluate(PARSE, [url, base])
    return parsed


@pytest.mark.parametrize(("url", "host"), OFF_SITE + [(url, None) for url, _ in ON_SITE])
def test_formrelay_sends_the_url_chromium_reads_with_the_host_chromium_reads(blank, url, host):
    base = None if has_scheme(url) else PAGE
    ours = http_url(url, base)
    theirs = chromium(blank, url, base)
    assert theirs is not None and ours == theirs["href"]
    assert host_of(ours) == theirs["hostname"].rstrip(".")
    if host is not None:
        assert host_of(ours) == host
    # The browser then follows the URL as sent: it reads the same host in it again.
    assert chromium(blank, ours, None) == theirs


@pytest.mark.parametrize(("target", "location"), LOGIN_LOCAL)
def test_a_log_in_next_formrelay_keeps_is_the_path_chromium_reads(blank, target, location):
    assert local_path(target) == location
    theirs = chromium(blank, target, HERE)
    assert theirs is not None
    assert (theirs["origin"], theirs["path"]) == ("https://forms.example", location)
    assert chromium(blank, location, HERE) == theirs
