"""Flask extensions, created unbound and bound to the app in the factory."""

from flask_limiter import Limiter
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def _client_address() -> str:
    # The socket's address, or ProxyFix's when FORMRELAY_TRUSTED_PROXIES says to believe it.
    from flask import request

    return request.remote_addr or "unknown"


db = SQLAlchemy(model_class=Base)
csrf = CSRFProtect()
login_manager = LoginManager()
# No default limits: each route that needs one says so (log-in, reset).
limiter = Limiter(key_func=_client_address)
