"""The delivery worker (see loop.py for how its pieces fit)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import sessionmaker

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


def make_worker(app: Flask) -> Worker:
    """A worker bound to the app's database engine and settings."""
    with app.app_context():
        engine = db.engine
    return Worker(sessionmaker(bind=engine, expire_on_commit=False), get_settings(app))
