"""WSGI entry point for production servers: `gunicorn formrelay.wsgi:app`."""

import sys

from dotenv import load_dotenv

from . import create_app
from .settings import ConfigError

load_dotenv()  # a .env in the working directory, for development; real env wins
try:
    app = create_app()
except ConfigError as exc:
    print(f"formrelay: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
