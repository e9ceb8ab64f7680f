"""URLs as browsers read them: the ones formrelay sends browsers to, and the hosts it compares.

Every URL that a browser follows or that a check compares is parsed here by ada (the WHATWG
URL Standard's parser, the one Node.js uses), never by urllib: the two disagree on inputs such
as "https://evil.example\\@good.example/", where urllib sees good.example and a browser goes
to evil.example. What formrelay then sends a browser is ada's serialisation, so the browser
follows exactly the URL that was checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ada_url import URL

_WEB = ("http://", "https://")
# A scheme as the URL Standard reads one: what starts an absolute URL, not a path.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# The log-in `next` is resolved against this stand-in origin: only a path on it is kept.
_HERE = "http://formrelay.invalid"
_CONTROL = re.compile(r"[\x00-\x1f]")
# Characters a browser drops or reads as "/" before parsing (C0 controls, DEL, backslash):
# a target holding any of them means something else to a browser than it seems to.
_UNSAFE_IN_PATH = re.compile(r"[\x00-\x1f\x7f\\]")


def _parse(value: str, base: str | None = None) -> URL | None:
    """ada's reading of `value` (against `base`), or None when it is no URL."""
    try:
        return URL(value, base) if base is not None else URL(value)
    except ValueError:  # UnicodeEncodeError (a lone surrogate) is one too
        return None


def http_url(value: str | None, base: str | None = None) -> str | None:
    """The URL a browser follows for `value` (ada's serialised href), when it is an http(s)
    URL with a host, resolved against `base` if relative; else None.

    A control character refuses the value instead of being dropped as a browser would: a
    URL that needs it is a trick, not a typo.
    """
    if not value or _CONTROL.search(value):
        return None
    url = _parse(value, base)
    if url is None:
        return None
    # The href alone (each attribute read is a call into ada): an http(s) URL always has a
    # host, since the standard refuses one without.
    href = url.href
    return href if href.startswith(_WEB) else None


def has_scheme(value: str) -> bool:
    """Whether `value` starts with a scheme ("https:", "javascript:"): an absolute URL, which
    no base changes, rather than a path."""
    return _SCHEME.match(value) is not None


def host_of(url: str | None) -> str | None:
    """The host of a URL as a browser reads it, for comparing with allowed domains: ada's
    normalised host (lower case, IDNA in punycode, percent-decoded, IPv4 written as
    dotted quads) without trailing dots; None when the URL has none."""
    if not url:
        return None
    parsed = _parse(url.strip())
    if parsed is None or not parsed.hostname:
        return None
    return parsed.hostname.rstrip(".").lower() or None


def domain_name(name: str) -> str | None:
    """A host name as `host_of` would give it ("Bücher.Example." -> "xn--bcher-kva.example");
    None when it is not a host on its own (a path, a user, a port or a bad name with it)."""
    if not name or any(ch in name for ch in "/\\@:?#%[] ") or any(ord(ch) < 33 for ch in name):
        return None
    return host_of(f"https://{name}/")


def host_allowed(host: str, domains: Iterable[str]) -> bool:
    """Whether `host` (from `host_of`) is one of `domains` or under a `*.example.com` among
    them (which matches its subdomains, not example.com itself)."""
    for domain in domains:
        if domain.startswith("*."):
            if host.endswith(domain[1:]) and len(host) > len(domain) - 1:
                return True
        elif host == domain:
            return True
    return False


def url_allowed(url: str | None, domains: Iterable[str]) -> bool:
    """Whether a browser sent to `url` lands on one of `domains` (see `host_allowed`)."""
    host = host_of(url)
    return host is not None and host_allowed(host, domains)


def local_path(target: str | None) -> str | None:
    """`target` as a path inside formrelay ("/forms?x=1"), normalised as a browser would
    read it; None for anything a browser would follow to another host ("//evil",
    "/\\evil", "https:evil", "/.//evil", which normalises to "//evil")."""
    if not target or not target.startswith("/") or _UNSAFE_IN_PATH.search(target):
        return None
    if target.startswith("//"):
        return None
    url = _parse(target, _HERE)
    if url is None or url.origin != _HERE:
        return None
    path = url.pathname + url.search + url.hash
    return None if path.startswith("//") else path
