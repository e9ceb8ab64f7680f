"""Where a request comes from: the trusted proxies' word, and the client address in one spelling."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

from ..services.networks import client_address

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class ClientAddresses:
    """Write REMOTE_ADDR in its canonical spelling (services/networks.py) before the app
    reads it, so that rate limits, blocked addresses, the stored address and the logs all
    see one client as one address ("::ffff:203.0.113.7" is 203.0.113.7)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        address = environ.get("REMOTE_ADDR")
        if address:
            environ["REMOTE_ADDR"] = client_address(address)
        return self.app(environ, start_response)


def client_addresses(app: WSGIApplication, trusted_proxies: int) -> WSGIApplication:
    """`app` behind ProxyFix when `trusted_proxies` hops are believed (their X-Forwarded-*
    headers), with the client address they give, or the socket's, made canonical."""
    app = ClientAddresses(app)
    if trusted_proxies:
        n = trusted_proxies
        app = ProxyFix(app, x_for=n, x_proto=n, x_host=n)
    return app
