"""WSGI entry point for production servers: `granian --interface wsgi formrelay.wsgi:app`."""

import sys

from dotenv import find_dotenv, load_dotenv

from . import create_app
from .ingest import group_commit
from .settings import ConfigError

# A .env in the working directory (where the server runs), for development; real env wins.
load_dotenv(find_dotenv(usecwd=True))
try:
    app = create_app(migrations=False)  # the Procfile's release phase migrates
except ConfigError as exc:
    print(f"formrelay: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
# The machine's committer, started now rather than by the first submission (formrelay.committer).
group_commit(app).start()
