"""Adversarial URLs and how a browser reads them: one table for the web tests of `_next`,
the form's redirect and Origin/Referer, and for the browser test that checks the table
against Chromium's own URL parser.

Each row: the URL as sent, and the host a browser goes to (IPv4 in dotted quads, IDNA in
punycode, lower case, as the URL Standard writes hosts). Relative rows are read against
PAGE, the page the form is on.
"""

from __future__ import annotations

ALLOWED = "good.example, bücher.example, 127.0.0.1"
PAGE = "https://good.example/contact"

# (as sent, the host a browser goes to): urllib reads another host in many of these.
OFF_SITE = [
    ("https://evil.example\\@good.example/", "evil.example"),
    ("https://evil.example\\\\@good.example/", "evil.example"),
    ("https:\\\\evil.example/", "evil.example"),
    ("https:/\\evil.example/", "evil.example"),
    ("https:evil.example", "evil.example"),
    ("HTTPS://EVIL.example/", "evil.example"),
    ("https://good.example@evil.example/", "evil.example"),
    ("https://good.example:x@evil.example/", "evil.example"),
    ("https://evil.example#@good.example/", "evil.example"),
    ("https://evil.example?@good.example/", "evil.example"),
    ("https://evil.example/@good.example/", "evil.example"),
    ("https://good.example.evil.example/", "good.example.evil.example"),
    ("https://good.example%2eevil.example/", "good.example.evil.example"),
    ("https://\uff45\uff56\uff49\uff4c.example/", "evil.example"),  # fullwidth "evil"
    ("https://127.0.0.2/", "127.0.0.2"),
    ("http://2130706434/", "127.0.0.2"),
    ("//evil.example/", "evil.example"),
    ("/\\evil.example/", "evil.example"),
    ("\\\\evil.example/", "evil.example"),
    ("\\/evil.example/", "evil.example"),
]

# (as sent, what the browser is sent to): the same host as an allowed domain, in any spelling.
ON_SITE = [
    ("https://good.example/thanks", "https://good.example/thanks"),
    ("https://GOOD.Example./thanks", "https://good.example./thanks"),
    ("https://%67ood.example/thanks", "https://good.example/thanks"),
    ("https://good.example:443/a b", "https://good.example/a%20b"),
    ("https://evil.example%5C@good.example/", "https://evil.example%5C@good.example/"),
    ("https://BÜCHER.example/danke", "https://xn--bcher-kva.example/danke"),
    ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
    ("http://0x7f.1/ok", "http://127.0.0.1/ok"),
    ("http://2130706433/ok", "http://127.0.0.1/ok"),
    ("http://0177.0.0.1/ok", "http://127.0.0.1/ok"),
    ("/thanks", "https://good.example/thanks"),
    ("thanks?x=1", "https://good.example/thanks?x=1"),
]

# Log-in `next` values that a browser would follow to another host, or that only look like
# a path: each sends the owner to the dashboard instead.
LOGIN_OFF_SITE = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\x0b/evil.example",
    " //evil.example",
    "https:evil.example",
    "https:/evil.example",
    "https://evil.example",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "evil.example",
    "/.//evil.example",
    "/a/..//evil.example",
    "/%2e%2e//evil.example",
    "",
]

# (as sent, the Location): paths inside formrelay, as a browser reads them.
LOGIN_LOCAL = [
    ("/account?tab=1", "/account?tab=1"),
    ("/forms/a b", "/forms/a%20b"),
    ("/forms/./x/../y#top", "/forms/y#top"),
    ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
    ("/login?next=//evil.example", "/login?next=//evil.example"),
]
