"""HTTP: one blueprint per area."""

from flask import current_app

from ..settings import Settings


def settings() -> Settings:
    """The running app's Settings."""
    value: Settings = current_app.config["FORMRELAY_SETTINGS"]
    return value
