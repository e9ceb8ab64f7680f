"""URLs that formrelay sends browsers to."""

from __future__ import annotations

from urllib.parse import urlsplit


def http_url(value: str | None) -> str | None:
    """`value` when it is an absolute http(s) URL a browser can be sent to, else None.

    urllib raises for a malformed IPv6 host ("http://[x") and, only when asked, for a port
    outside 0-65535; both would otherwise surface as a 500 while building a redirect.
    """
    if not value or any(ord(ch) < 32 for ch in value):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises for a bad port)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value
