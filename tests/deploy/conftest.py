"""The deploy check: what Heroku's Python buildpack (Dokku's default builder) installs, run as
the Procfile runs it. It takes minutes (a fresh venv), so `make deploy-check` runs it (and
.ci/run calls that); `make test` (pytest over tests/) deselects it unless tests/deploy is named.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DEPLOY_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _deploy_check_named(config):
        return
    ours = [item for item in items if DEPLOY_DIR in item.path.parents]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if DEPLOY_DIR not in item.path.parents]


def _deploy_check_named(config: pytest.Config) -> bool:
    """Whether the command line names tests/deploy or a file in it."""
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == DEPLOY_DIR or DEPLOY_DIR in path.parents:
            return True
    return False
