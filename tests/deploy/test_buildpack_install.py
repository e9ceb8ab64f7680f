"""A deploy as Heroku's Python buildpack (Dokku's default builder) makes it, on this machine.

The repository's files go to a folder of their own; a fresh venv of the Python in
.python-version gets `pip install -r requirements.txt` and nothing else (no dev extra, and
none of the development venv's packages); then, in that venv, every module of formrelay
imports, the Procfile's `release` migrates a new SQLite database, a form is made with the
CLI, and the Procfile's `web` stores a submission and refuses a forged SNS message with 403.
Runnable alone: `make deploy-check` (or pytest tests/deploy).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from packaging.utils import canonicalize_name

from ..servers import ROOT, free_port, procfile, without_settings
from ..test_dependencies import pins
from ..test_processes import start, stop, wait_for

pytestmark = pytest.mark.slow

TOPIC = "arn:aws:sns:us-east-1:123456789012:formrelay-ses-events"
BASE_URL = "https://forms.example.com"
# Imports every module of the installed formrelay (Alembic's migrations folder is no package:
# its env.py and revisions run only inside Alembic, as `release` shows).
IMPORT_ALL = """
import importlib, pkgutil, formrelay
names = [m.name for m in pkgutil.walk_packages(formrelay.__path__, "formrelay.")]
for name in names:
    importlib.import_module(name)
print(formrelay.__file__)
print(len(names), "modules")
"""


@dataclass
class Deploy:
    app: Path  # the files as the buildpack gets them (its /app)
    venv: Path
    env: dict[str, str]

    def run(self, args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            env={**self.env, **extra},
            cwd=self.app,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


def repository_files() -> list[str]:
    """What `git push` would send: tracked files, and new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def deploy_python() -> str:
    version = (ROOT / ".python-version").read_text().strip()
    found = shutil.which(f"python{version}")
    if found is None and f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        found = sys.executable
    if found is None:
        pytest.fail(f"python{version} (from .python-version) is not installed")
    return found


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    root = tmp_path_factory.mktemp("buildpack")
    app = root / "app"
    for name in repository_files():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, app / name)
    venv = root / "venv"
    subprocess.run([deploy_python(), "-m", "venv", str(venv)], check=True)
    development_bin = str(Path(sys.executable).parent)
    path = [str(venv / "bin")] + [
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != development_bin
    ]
    env = {
        name: value
        for name, value in without_settings(os.environ).items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")
    }
    env.update(PATH=os.pathsep.join(path), PYTHONUNBUFFERED="1")
    made = Deploy(app, venv, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    upgraded = made.run([*pip, "install", "--quiet", "--upgrade", "pip"])
    assert upgraded.returncode == 0, upgraded.stderr
    installed = made.run([*pip, "install", "--quiet", "-r", "requirements.txt"])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return made


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, str]:
    """Production settings on a new SQLite database of the test's own."""
    return {
        "FORMRELAY_ENV": "production",
        "SECRET_KEY": "deploy-check-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'formrelay.sqlite3'}",
        "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"),
        "FORMRELAY_BASE_URL": BASE_URL,
        "FORMRELAY_SNS_TOPIC_ARNS": TOPIC,
    }


def test_the_buildpack_installs_the_lock_and_nothing_else(deploy):
    """Every package the install brought is pinned, at its pin: the lock is whole."""
    frozen = deploy.run([str(deploy.venv / "bin" / "pip"), "freeze", "--exclude-editable"])
    assert frozen.returncode == 0, frozen.stderr
    installed: dict[str, str] = {}
    for line in frozen.stdout.splitlines():
        name, _, version = line.partition(" @ ") if " @ " in line else line.partition("==")
        installed[canonicalize_name(name)] = version
    assert installed.pop("formrelay").startswith("file:"), "the project itself, from `.`"
    locked = {name: str(next(iter(req.specifier)).version) for name, req in pins().items()}
    assert installed == locked
    checked = deploy.run([str(deploy.venv / "bin" / "pip"), "check"])
    assert checked.returncode == 0, checked.stdout


def test_every_module_of_formrelay_imports_from_a_plain_install(deploy, settings):
    imported = deploy.run(
        [str(deploy.venv / "bin" / "python"), "-c", IMPORT_ALL],
        **settings,
        FORMRELAY_COMMITTER="thread",  # formrelay.wsgi starts one; no process to leave behind
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    installed_at, count = imported.stdout.splitlines()[-2:]
    assert Path(installed_at).is_relative_to(deploy.venv), "formrelay came from elsewhere"
    assert int(count.split()[0]) > 50


def forged_sns_notification() -> str:
    """A current message for an allowed topic, signed by nobody: its certificate is not AWS's."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "5f1c7a3e-0000-4000-8000-000000000001",
            "TopicArn": TOPIC,
            "Message": json.dumps({"eventType": "Bounce"}),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "SignatureVersion": "2",
            "Signature": base64.b64encode(b"\0" * 256).decode(),
            "SigningCertURL": "https://sns.example.net/SimpleNotificationService-0.pem",
        }
    )


def test_release_then_web_store_a_submission_and_refuse_a_forged_sns_message(
    deploy, settings, tmp_path
):
    released = deploy.run(procfile("release"), **settings)
    assert released.returncode == 0, released.stderr[-3000:]
    created = deploy.run(
        ["formrelay", "form", "create", "--name", "Contact", "--to", "owner@example.com"],
        **settings,
    )
    assert created.returncode == 0, created.stderr[-3000:]
    endpoint = created.stdout.strip().splitlines()[-1]
    assert endpoint.startswith(f"{BASE_URL}/f/")

    port = free_port()
    local = f"http://127.0.0.1:{port}"
    web = start(
        procfile("web"),
        {**deploy.env, **settings, "PORT": str(port), "WEB_CONCURRENCY": "1"},
        deploy.app,
    )
    try:
        wait_for(f"{local}/healthz", web, timeout=60)
        posted = httpx.post(
            endpoint.replace(BASE_URL, local),
            data={"email": "ann@example.org", "message": "Sent through the buildpack's install"},
            timeout=30,
        )
        hook = httpx.post(
            f"{local}/hooks/ses",
            content=forged_sns_notification(),
            headers={"Content-Type": "text/plain", "x-amz-sns-message-type": "Notification"},
            timeout=30,
        )
    finally:
        output = stop(web)
    assert posted.status_code in (200, 302, 303), output[-3000:]
    assert posted.headers["location"] == f"{BASE_URL}/thanks"
    assert (hook.status_code, hook.text.split(":")[0]) == (403, "forbidden"), output[-3000:]

    database = sqlite3.connect(settings["DATABASE_URL"].removeprefix("sqlite:///"))
    try:
        stored = [json.loads(row[0]) for row in database.execute("SELECT fields FROM submissions")]
    finally:
        database.close()
    assert stored == [
        [["email", "ann@example.org"], ["message", "Sent through the buildpack's install"]]
    ]
