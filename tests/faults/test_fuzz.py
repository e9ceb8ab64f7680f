"""Fuzzing POST /f/<key>: whatever a client sends, never a 500, never an unhandled error,
and every submission accepted reaches the SMTP server.

Hypothesis draws content types (valid, invalid, missing, with odd parameters), bodies
(urlencoded with any names, values and percent-escapes, invalid UTF-8, JSON of any shape and
encoding with lone surrogate escapes, multipart with odd or mismatched boundaries, truncated),
values that are IDN and display-name addresses or hold control characters, and headers
(Accept, X-Requested-With, Origin, Referer, a Content-Length that does not match). Through
Flask's test client, each accepted submission then sent by the worker to a real SMTP server
(aiosmtpd); then as raw bytes over real HTTP (Content-Length, chunked, chunked without its
last chunk or with a malformed chunk header, cut short and half-closed) to the Procfile's web
server, with a worker process mailing whatever it stored. Quick: runs in `make test` too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from formrelay.extensions import db
from formrelay.worker import make_worker

from ..factories import make_form
from ..mailserver import MailServer
from ..servers import wait_until
from .conftest import create_form, delivery_statuses

JSON_TYPE = "application/json"
FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the checkout; a failure prints its example
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app and form serve every example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- what clients send ---------------------------------------------------------------------
# Header values as WSGI carries them: latin-1 text without line breaks.
header_text = st.text(
    st.characters(min_codepoint=9, max_codepoint=255, exclude_characters="\n\r\x0b\x0c\x7f"),
    max_size=60,
)
BASE_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/json",
    "application/ld+json",
    "APPLICATION/JSON",
    "text/plain",
    "text/html",
    "application/xml",
    "application/octet-stream",
    "multipart/mixed",
    "form-data",
    "*/*",
    "",
]
param = st.tuples(
    st.sampled_from(["charset", "boundary", "CHARSET", "q", "", "x"]),
    st.one_of(
        st.sampled_from(["utf-8", "latin-1", "utf-16", "", '"', '""', "ok", "a b", "--"]),
        header_text,
    ),
    st.booleans(),  # quoted
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(BASE_TYPES),
    st.builds(
        lambda base, params: (
            base + "".join(f'; {k}="{v}"' if q else f";{k}={v}" for k, v, q in params)
        ),
        st.sampled_from(BASE_TYPES),
        st.lists(param, max_size=3),
    ),
    header_text,
)

ACCEPTS = [
    "application/json",
    "text/html",
    "*/*",
    "application/json;q=0.5, text/html;q=0.5",
    "text/html;q=abc",
    "application/json;q=2",
    "",
]
# URLs that urllib refuses (urlsplit, or .port once a redirect's Location is built).
BAD_URLS = ["http://[::1", "https://[", "http://example.org:99999/", "http://example.org:x/"]
SPECIAL = [
    "_replyto",
    "_subject",
    "_next",
    "_cc",
    "_gotcha",
    "_language",
    "_foo",
    "email",
    "Email",
    "message",
    "",
]
# IDN and display-name addresses, and some that formrelay refuses (a non-ASCII local part).
ADDRESSES = [
    "ann@bücher.de",
    "ANN@BÜCHER.DE, ann@bücher.de",
    "Bob <bob@example.net>",
    '"Zoë, Café" <zoe@café.example>',
    "Zoë <zoe@example.net>",
    "zoë@example.org",
    "owner@example.com",  # the form's own recipient
    "<a@example.org>",
    "Bob <bob@example.net> extra",
]
CONTROL_TEXT = ["red \x1b[31mtext\x1b[0m", "del\x7f", "csi\x9b2J", "bell\x07", "a\u2028b"]
field_names = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(max_size=30),
    st.sampled_from(["x\r\nAmount:", "na\x1bme", "tab\tname"]),
)
field_values = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "ann@example.org",
            "not an address",
            "a@example.org, b@example.org, c@example.org, d@example.org, e@example.org, f@x.org",
            "https://example.org/thanks",
            "/thanks",
            "javascript:alert(1)",
            "//evil.example/",
            "Hello\r\nBcc: victim@example.org",
            "x" * 5000,
            *BAD_URLS,
            *ADDRESSES,
            *CONTROL_TEXT,
        ]
    ),
    st.text(max_size=200),
    st.text(st.characters(max_codepoint=0x2030), max_size=40),  # controls, C1, U+2028
    st.integers(0, 120_000).map(lambda n: "y" * n),  # around the 100 KB body limit
)
fields = st.builds(
    lambda plain, rest: plain + rest,  # mostly one ordinary field, so that many are accepted
    st.sampled_from([[("message", "Hello")], [("name", "Ann")], []]),
    st.lists(st.tuples(field_names, field_values), max_size=12),
)


@st.composite
def urlencoded_bodies(draw: st.DrawFn) -> bytes:
    pairs = draw(fields)
    how = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "raw-escapes", "raw-bytes"]))
    if how == "raw-escapes":  # percent-escapes of any bytes, valid UTF-8 or not
        raw = draw(st.binary(max_size=40))
        name = draw(st.sampled_from(["message", "_subject", "email", ""]))
        return f"{name}={''.join(f'%{b:02X}' for b in raw)}".encode()
    if how == "raw-bytes":
        return draw(st.binary(max_size=200))
    return urlencode(pairs, encoding=how, errors="replace").encode("ascii")


# Any code point, lone surrogates included: json.dumps writes them as "\udfff" escapes.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | any_text
    | st.sampled_from(ADDRESSES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    document = draw(
        st.one_of(
            st.dictionaries(field_names | any_text, json_values, max_size=8),
            json_values,
        )
    )
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    body = text.encode(encoding, errors="replace")
    return draw(
        st.sampled_from(
            [body, body[: len(body) // 2], b"[" * 50_000, b'{"a":' * 20_000, b"\xef\xbb\xbf" + body]
        )
    )


boundaries = st.one_of(
    st.sampled_from(["----WebKitFormBoundary7MA4YWxkTrZu0gW", "x", "a" * 70, "b" * 71]),
    st.sampled_from(["", " ", '"q"', "a b", "a;b", "}", "\u00e9"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80),
)


@st.composite
def multipart(draw: st.DrawFn) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/form-data body, often subtly wrong."""
    boundary = draw(boundaries)
    in_body = boundary if draw(st.integers(0, 3)) else draw(boundaries)  # mismatched at times
    newline = draw(st.sampled_from([b"\r\n", b"\n"]))
    parts = []
    for name, value in draw(fields):
        disposition = f'form-data; name="{name}"'
        filename = None if draw(st.integers(0, 3)) else draw(st.text(max_size=20))
        if filename is not None:
            disposition += f'; filename="{filename}"'
        headers = [f"Content-Disposition: {disposition}"]
        if draw(st.booleans()):
            headers.append(f"Content-Type: {draw(content_types) or 'text/plain'}")
        raw = value.encode(draw(st.sampled_from(["utf-8", "latin-1", "utf-16"])), "replace")
        parts.append(
            b"--"
            + in_body.encode("latin-1", "replace")
            + newline
            + newline.join(h.encode("utf-8") for h in headers)
            + newline * 2
            + raw
            + newline
        )
    body = b"".join(parts)
    if draw(st.integers(0, 3)):
        body += b"--" + in_body.encode("latin-1", "replace") + b"--" + newline
    if body and not draw(st.integers(0, 3)):
        body = body[: draw(st.integers(0, len(body)))]
    shown = f'"{boundary}"' if draw(st.booleans()) else boundary
    return f"multipart/form-data; boundary={shown}", body


@dataclass
class Post:
    method: str
    path: str
    content_type: str | None
    body: bytes
    headers: dict[str, str]


@st.composite
def posts(draw: st.DrawFn, keys: list[str]) -> Post:
    kind = draw(st.sampled_from(["urlencoded"] * 3 + ["json"] * 2 + ["multipart"] * 2 + ["binary"]))
    if kind == "multipart":
        content_type, body = draw(multipart())
        if draw(st.integers(0, 4)) == 0:
            content_type = draw(content_types)
    else:
        body = draw(
            {"urlencoded": urlencoded_bodies(), "json": json_bodies(), "binary": st.binary()}[kind]
        )
        matching = {
            "urlencoded": "application/x-www-form-urlencoded",
            "json": "application/json",
            "binary": "application/octet-stream",
        }[kind]
        content_type = matching if draw(st.integers(0, 2)) else draw(content_types)
    headers: dict[str, str] = {}
    optional = {
        "Accept": st.one_of(
            st.sampled_from(ACCEPTS),
            header_text,
        ),
        "X-Requested-With": st.one_of(
            st.sampled_from(["XMLHttpRequest", "xmlhttprequest"]), header_text
        ),
        "Origin": st.one_of(
            st.sampled_from(["null", "https://example.org", *BAD_URLS]), header_text
        ),
        "Referer": st.one_of(
            st.sampled_from(["https://example.org/contact", "/x", *BAD_URLS]), header_text
        ),
        "User-Agent": header_text,
        "Content-Length": st.one_of(
            st.integers(-5, 5).map(lambda d: str(max(len(body) + d, 0))),
            st.sampled_from(["-1", "abc", " 12", "99999999999999999999", ""]),
        ),
    }
    for name, values in optional.items():
        if draw(st.integers(0, 3)) == 0:
            headers[name] = draw(values)
    pick = draw(st.integers(0, 9))  # mostly the enabled form, so that bodies get parsed
    if pick < 7:
        key = keys[0]
    elif pick < 9:
        key = draw(st.sampled_from(keys))
    else:
        key = quote(draw(st.text(max_size=30)), safe="")
    path = draw(st.sampled_from([f"/f/{key}", f"/p/{key}/f/{key}", f"/f/{key}?_next=x&a=%FF"]))
    method = draw(st.sampled_from(["POST"] * 12 + ["GET", "OPTIONS", "PUT", "HEAD"]))
    return Post(method, path, content_type, body, headers)


def regressions(key: str) -> list[Post]:
    """Requests that once broke the endpoint: tried first in every run."""
    form = "application/x-www-form-urlencoded"
    json_accept = {"Accept": "application/json"}
    html = {"Accept": "text/html", "Referer": "https://example.org/contact"}
    return [
        Post("POST", f"/f/{key}", form, b"message=hi&_next=http%3A%2F%2F%5B%3A%3A1", json_accept),
        Post("POST", f"/f/{key}", form, b"message=hi&_next=%2Fx", {"Referer": "http://[::1"}),
        Post("POST", f"/f/{key}", form, b"message=hi&_next=%2Fx", {"Origin": "http://[::1"}),
        Post("POST", f"/f/{key}", form, b"message=hi", {"Referer": "http://[::1"}),
        Post("POST", f"/f/{key}", form, b"message=hi&_gotcha=x&_next=http%3A%2F%2F%5B", {}),
        Post("POST", f"/f/{key}", form, b"message=hi&_next=http%3A%2F%2Fa%3A99999%2F", {}),
        Post("POST", f"/f/{key}", form, b"message=hi&_next=http%3A%2F%2Fa%3Ax%2F", {}),
        Post("POST", f"/f/{key}", form, b"email=bad", {"Referer": "http://[::1"}),
        Post("POST", f"/f/{key}", form, b"message=a%00b", json_accept),  # PostgreSQL: NUL
        Post("POST", f"/f/{key}", "application/json", b'{"a\\u0000": "b"}', json_accept),
        # Issue 7, section 5: found by probing the running server from outside.
        Post("POST", f"/f/{key}", JSON_TYPE, b'{"_subject": "S\\udfff", "message": "x"}', {}),
        Post("POST", f"/f/{key}", JSON_TYPE, b'{"message": "x", "_next": "/\\udfff"}', html),
        Post("POST", f"/f/{key}", JSON_TYPE, b'{"message": "x\\ud800"}', json_accept),
        Post("POST", f"/f/{key}", JSON_TYPE, b'{"na\\udfffme": "x"}', json_accept),
        Post("POST", f"/f/{key}", form, b"message=hi&_cc=ann%40b%C3%BCcher.de", {}),
        Post("POST", f"/f/{key}", form, b"message=hi&_replyto=ann%40b%C3%BCcher.de", {}),
        Post("POST", f"/f/{key}", form, b"message=hi&_replyto=Bob+%3Cbob%40example.net%3E", {}),
        Post("POST", f"/f/{key}", form, b"message=hi&_subject=a%1B%5B2Jb%7F", {}),
        Post("POST", f"/f/{key}", form, b"x%0D%0AAmount%3A=1&message=hi", {}),
        Post(
            "POST", f"/f/{key}", form, b"m=1&_cc=owner%40example.com&_cc=A%40x.io&_cc=a%40x.io", {}
        ),
        Post("POST", f"/f/{key}", form, b"m=1&email=a%40x.io&email=bad", json_accept),
    ]


# -- through the app -------------------------------------------------------------------------
@pytest.fixture
def keys(app) -> list[str]:
    """An enabled form, a disabled one, one without verified recipients."""
    return [
        make_form(db.session, allow_cc=True).key,
        make_form(db.session, enabled=False).key,
        make_form(db.session, verified=False).key,
    ]


def test_fuzzed_posts_never_get_a_500_and_every_accepted_one_is_mailed(
    smtp_config, app, client, keys, smtp_server, caplog
):
    caplog.set_level(logging.ERROR, logger="formrelay")
    statuses: dict[str, int] = {}
    worker = make_worker(app)

    @FUZZ_SETTINGS
    @given(post=posts(keys))
    def check(post: Post) -> None:
        before = len(caplog.records)
        headers = dict(post.headers)
        if post.content_type is not None:
            headers["Content-Type"] = post.content_type
        response = client.open(post.path, method=post.method, data=post.body, headers=headers)
        errors = [r.getMessage() for r in caplog.records[before:] if r.levelno >= logging.ERROR]
        assert not errors, errors
        assert response.status_code < 500, response.get_data(as_text=True)[:500]
        if response.mimetype == "application/json" and post.method != "HEAD":
            answer = response.get_json()
            assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
            code = answer["errors"][0]["code"] if answer.get("errors") else "ok"
            outcome = f"{response.status_code} {code}"
        else:
            outcome = f"{response.status_code} {response.mimetype}"
        statuses[outcome] = statuses.get(outcome, 0) + 1
        follow_to_the_mail_server(worker, smtp_server)

    for known in regressions(keys[0]):
        check = example(post=known)(check)
    check()
    print(f"\nfuzz (test client) answers: {dict(sorted(statuses.items()))}")
    print(f"fuzz (test client) messages received by the SMTP server: {len(smtp_server.received)}")
    assert (
        len({outcome.split()[0] for outcome in statuses}) > 3
    )  # the fuzzing reached more than one kind of answer
    assert smtp_server.received  # and accepted submissions were mailed


def follow_to_the_mail_server(worker, smtp_server: MailServer) -> None:
    """Send whatever the last request stored: every delivery is sent (none failed, none
    dead), each as one message to its recipient, with one-line ASCII headers."""
    before = len(smtp_server.received)
    outcomes = worker.drain()
    assert [o.status for o in outcomes] == ["sent"] * len(outcomes), outcomes
    received = smtp_server.received[before:]
    assert len(received) == len(outcomes)
    for message in received:
        assert "owner@example.com" in message.rcpt_tos
        assert all(address.isascii() for address in message.rcpt_tos), message.rcpt_tos
        head = message.content.split(b"\r\n\r\n", 1)[0]
        head.decode("ascii")  # encoded words and IDNA: 7-bit on the wire
        assert b"\x1b" not in head and b"\x7f" not in head
        assert message.message.get_body(("plain",)) is not None


# -- over real HTTP, to the Procfile's web server ------------------------------------------------
FRAMINGS = ["length", "cut", "chunked", "length", "chunked, no last chunk", "bad chunk header"]


def raw_request(port: int, post: Post, framing: str) -> bytes | None:
    """Send `post` as raw HTTP/1.1 bytes, framed as drawn: Content-Length as drawn, chunked,
    chunked without its last chunk, with a malformed chunk header, or cut in the middle of
    its Content-Length and half-closed. The answer, or None when the server is still
    waiting for the body that Content-Length promised."""
    lines = [f"{post.method} {post.path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if post.content_type is not None:
        lines.append(f"Content-Type: {post.content_type}")
    headers = dict(post.headers)
    body = post.body
    half_close = framing in ("chunked, no last chunk", "cut")
    if framing == "cut":
        headers["Content-Length"] = str(len(body) + 1 + len(body) // 2)
        body = body[: len(body) // 2]
    elif framing != "length":
        headers.pop("Content-Length", None)
        lines.append("Transfer-Encoding: chunked")
        framed = [b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(body)]
        if framing == "bad chunk header":
            framed.insert(len(framed) // 2, b"zz\r\n")
        body = b"".join(framed) + (b"" if framing == "chunked, no last chunk" else b"0\r\n\r\n")
    else:
        headers.setdefault("Content-Length", str(len(body)))
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    # Otherwise the write side stays open, as real clients keep it: granian (hyper) takes a
    # half-closed connection after a whole body for a client gone away and answers nothing.
    promised = headers.get("Content-Length", "").strip()
    short = framing == "length" and promised.isdigit() and int(promised) > len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=1.5 if short else 3) as sock:
        with contextlib.suppress(OSError):  # the server answered before taking the whole body
            sock.sendall(head + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            if short and not answer:
                return None
            raise
    return answer


def _chunks(body: bytes, size: int = 1000) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def test_fuzzed_raw_http_never_gets_a_500_and_what_is_stored_is_mailed(
    sqlite_url, stacks, tmp_path
):
    key = create_form(sqlite_url, tmp_path / "instance")
    with MailServer() as mail:
        stack = stacks(sqlite_url, mail.port)
        web = stack.web()
        worker = stack.worker()
        statuses: dict[str, int] = {}
        drawn: dict[str, int] = {}

        @settings(FUZZ_SETTINGS, max_examples=80)
        @given(post=posts([key]), framing=st.sampled_from(FRAMINGS))
        def check(post: Post, framing: str) -> None:
            drawn[framing] = drawn.get(framing, 0) + 1
            answer = raw_request(stack.port, post, framing)
            if answer is None:  # waiting, rightly, for the rest of a body it was promised
                statuses["waiting"] = statuses.get("waiting", 0) + 1
                return
            if not answer and framing in ("chunked, no last chunk", "cut"):
                statuses["half-closed, no answer"] = statuses.get("half-closed, no answer", 0) + 1
                return
            status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
            assert status_line.startswith("HTTP/1.1 "), (status_line, web.describe())
            status = status_line.split()[1]
            statuses[f"{status} {framing}"] = statuses.get(f"{status} {framing}", 0) + 1
            assert not status.startswith("5"), (answer[:800], web.describe())
            if framing == "cut" and post.method == "POST" and "/f/" in post.path:
                assert not status.startswith("2") and status != "303", answer[:800]

        for known in regressions(key):
            check = example(post=known, framing="length")(check)
        check()

        # Every delivery of every stored submission reaches the SMTP server, none fails.
        def settled() -> bool:
            counts = delivery_statuses(sqlite_url)
            return not any(counts[s] for s in ("pending", "sending", "failed"))

        wait_until(settled, 30, worker.describe)
        counts = delivery_statuses(sqlite_url)
    print(
        f"\nfuzz (raw HTTP to the Procfile web server) statuses: {dict(sorted(statuses.items()))}"
        f"\nframings: {drawn}\ndeliveries: {dict(counts)}, messages received: {len(mail.received)}"
    )
    assert counts["dead"] == 0, worker.describe()
    assert len(mail.received) == counts["sent"] > 0
    for received in mail.received:
        assert all(address.isascii() for address in received.rcpt_tos)
    log = web.output() + worker.output()
    for sign in ("unhandled error", "Traceback", "Error handling request", " ERROR "):
        assert sign not in log, web.describe() + worker.describe()
    assert web.running and worker.running
