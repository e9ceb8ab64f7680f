"""The client address in one spelling, wherever it is read: an IPv4 client seen through a
dual-stack proxy or socket ("::ffff:203.0.113.7") is 203.0.113.7 to the block list, the rate
limits and the stored submission; IPv6 is compressed, without its zone."""

from __future__ import annotations

import pytest

from formrelay.extensions import db
from formrelay.services import spam

from ..auth import csrf_token
from ..factories import make_form
from .shapes import post_json, stored


@pytest.fixture
def app_config(app_config, request):
    """Behind one trusted proxy, as docs/deploy.md sets formrelay up behind Dokku's nginx."""
    return {**app_config, "trusted_proxies": 1, **getattr(request, "param", {})}


def blocking(addresses: str):
    form = make_form(db.session)
    spam.update_spam_settings(db.session, form, spam.SpamChanges(blocked_addresses=addresses))
    db.session.commit()
    return form


@pytest.mark.parametrize(
    "forwarded",
    ["203.0.113.7", "::ffff:203.0.113.7", "::FFFF:cb00:7107", "0:0:0:0:0:ffff:203.0.113.7"],
)
def test_a_blocked_ipv4_client_is_caught_through_a_dual_stack_proxy(client, app, forwarded):
    form = blocking("203.0.113.7")
    r = post_json(client, form.key, {"message": "hi"}, X_Forwarded_For=forwarded)
    assert (r.status_code, r.json["ok"]) == (200, True)
    [kept] = stored()
    assert (kept.is_spam, kept.spam_reason, kept.remote_addr) == (
        True,
        "sent from a blocked address (203.0.113.7)",
        "203.0.113.7",
    )


def test_a_block_written_as_an_ipv4_mapped_address_is_kept_as_its_ipv4_address(client, app):
    form = blocking("::ffff:203.0.113.7, ::ffff:198.51.100.0/120")
    assert form.blocked_addresses == ["203.0.113.7/32", "198.51.100.0/24"]
    for forwarded in ("203.0.113.7", "198.51.100.9"):
        post_json(client, form.key, {"message": "hi"}, X_Forwarded_For=forwarded)
    assert [(s.is_spam, s.remote_addr) for s in stored()] == [
        (True, "203.0.113.7"),
        (True, "198.51.100.9"),
    ]


def test_a_block_saved_before_as_an_ipv4_mapped_range_still_matches(client, app):
    """Entries an earlier formrelay kept as written ("::ffff:cb00:7107/128")."""
    form = make_form(db.session, blocked_addresses=["::ffff:cb00:7107/128"])
    post_json(client, form.key, {"message": "hi"}, X_Forwarded_For="203.0.113.7")
    assert [s.is_spam for s in stored()] == [True]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("203.0.113.7", "::ffff:203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8::1", "2001:DB8:0:0:0:0:0:1"),
        ("fe80::1", "fe80::1%eth0"),
    ],
)
def test_the_rate_limit_counts_every_spelling_of_an_address_as_one_client(
    client, app, first, second
):
    form = make_form(db.session, rate_limit="1/minute")
    r = post_json(client, form.key, {"message": "1"}, X_Forwarded_For=first)
    assert r.status_code == 200
    r = post_json(client, form.key, {"message": "2"}, X_Forwarded_For=second)
    assert r.status_code == 429


@pytest.mark.parametrize(
    ("app_config", "environ", "headers", "seen"),
    [
        # A dual-stack socket (listening on ::) reports an IPv4 client as IPv4-mapped.
        ({"trusted_proxies": 0}, {"REMOTE_ADDR": "::ffff:203.0.113.7"}, {}, "203.0.113.7"),
        ({}, {}, {"X-Forwarded-For": "10.0.0.1, 2001:0DB8:0000::0001"}, "2001:db8::1"),
        ({}, {}, {"X-Forwarded-For": "fe80::1%eth0"}, "fe80::1"),
        # What is no address stays as it is: it matches no block.
        ({}, {}, {"X-Forwarded-For": "not-an-address"}, "not-an-address"),
    ],
    indirect=["app_config"],
)
def test_the_client_address_is_stored_in_one_spelling(client, app, environ, headers, seen):
    form = make_form(db.session)
    r = client.post(f"/f/{form.key}", json={"m": "1"}, headers=headers, environ_base=environ)
    assert r.status_code == 200
    assert stored()[-1].remote_addr == seen


def test_failed_log_ins_count_every_spelling_of_an_address_as_one_client(client, app):
    token = csrf_token(client, "/login")
    spellings = ["203.0.113.7", "::ffff:203.0.113.7"]
    statuses = [
        client.post(
            "/login",
            data={"csrf_token": token, "email": f"n{n}@example.com", "password": "wrong-pass"},
            headers={"X-Forwarded-For": spellings[n % 2]},
        ).status_code
        for n in range(11)
    ]
    assert statuses == [400] * 10 + [429]
