"""The delivery worker (see loop.py for how its pieces fit)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import sessionmaker

from ..db import worker_engine
from ..extensions import db
from ..settings import get_settings
from .claims import Claim, claim_due_deliveries
from .heartbeat import WorkerIdentity
from .loop import Worker
from .outcomes import Outcome, retry_delay
from .pacing import Pacer

__all__ = [
    "Claim",
    "Outcome",
    "Pacer",
    "Worker",
    "WorkerIdentity",
    "claim_due_deliveries",
    "make_worker",
    "retry_delay",
]


def make_worker(app: Flask, *, own_engine: bool = False) -> Worker:
    """A worker with the app's settings, bound to the app's database engine, or with
    `own_engine` (the `formrelay worker` process), on SQLite, to one whose commits do not
    wait for the disk (db.worker_engine)."""
    settings = get_settings(app)
    with app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
        engine = worker_engine(db.engine.url, settings) if own_engine and sqlite else db.engine
    return Worker(sessionmaker(bind=engine, expire_on_commit=False), settings)
