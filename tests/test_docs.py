"""The documentation is part of the product: these tests fail when it falls behind the code."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import re
from pathlib import Path
from types import ModuleType

import click
import pytest
from dotenv import dotenv_values

from formrelay.cli import cli
from formrelay.settings import ALIASES, FIELD_TO_VAR, Settings, load_settings
from formrelay.web.errors import STATUS_BY_CODE

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
CLI_DOC = DOCS / "cli.md"
ENV_EXAMPLE = ROOT / ".env.example"
SETTING_VARS = list(FIELD_TO_VAR.values())
ALIAS_VARS = [alias for names in ALIASES.values() for alias in names]
# Read by the Procfile, `serve` or the tests, documented beside the settings.
OTHER_VARS = {"PORT", "WEB_CONCURRENCY", "TEST_DATABASE_URL"}


def load_generator() -> ModuleType:
    """scripts/generate-cli-docs, which writes the help blocks of docs/cli.md."""
    path = ROOT / "scripts" / "generate-cli-docs"
    loader = importlib.machinery.SourceFileLoader("generate_cli_docs", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


generator = load_generator()


# -- README ----------------------------------------------------------------------------------
def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    title, rest = text.split("\n", 1)
    assert title == "# formrelay"
    first_block = re.match(r"\s*```sh\n(.*?)```", rest, re.S)
    assert first_block, "the README must open with a code block, right after the title"
    commands = [line.split("#")[0].strip() for line in first_block[1].splitlines()]
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readmes_test_command():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines


def test_readme_links_every_document():
    text = README.read_text()
    for doc in sorted(DOCS.glob("*.md")):
        assert f"](docs/{doc.name})" in text, f"README.md does not link docs/{doc.name}"


def submission_error_codes() -> set[str]:
    """Every code a submission can be refused with, as the source raises them."""
    codes: set[str] = set()
    for path in (ROOT / "src" / "formrelay").rglob("*.py"):
        codes.update(re.findall(r'SubmissionRejected\(\s*"([A-Z_]+)"', path.read_text()))
    return codes | {"FORM_NOT_FOUND", "INACTIVE"}


def test_readme_lists_every_submission_error_with_its_status():
    rows = re.findall(r"^\| (\d{3}) \| `([A-Z_]+)` \|", README.read_text(), re.M)
    documented = {code: int(status) for status, code in rows}
    expected = {code: STATUS_BY_CODE.get(code, 400) for code in submission_error_codes()}
    assert {code: documented.get(code) for code in expected} == expected


# -- configuration ---------------------------------------------------------------------------
def documented_defaults() -> dict[str, str]:
    """{variable: default} from the tables of docs/configuration.md."""
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", CONFIGURATION.read_text(), re.M)
    return {var: default.strip().strip("`") for var, default in rows}


def as_documented(value: object) -> str:
    if value == "":
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_every_setting_is_documented_with_its_real_default():
    defaults = Settings()
    expected = {var: as_documented(getattr(defaults, name)) for name, var in FIELD_TO_VAR.items()}
    documented = documented_defaults()
    assert {var: documented.get(var) for var in expected} == expected


def test_the_configuration_doc_documents_no_setting_that_does_not_exist():
    assert set(documented_defaults()) - set(SETTING_VARS) - OTHER_VARS == set()


@pytest.mark.parametrize("alias", ALIAS_VARS)
def test_every_alias_is_documented(alias):
    assert f"`{alias}`" in CONFIGURATION.read_text()


# -- .env.example ----------------------------------------------------------------------------
def commented_assignments() -> dict[str, str]:
    """The `# NAME=value` lines of .env.example, uncommented, read as python-dotenv reads them."""
    lines = [
        line[2:]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"# [A-Z][A-Z0-9_]*=", line)
    ]
    values = dotenv_values(stream=io.StringIO("\n".join(lines)))
    return {name: value or "" for name, value in values.items()}


def test_env_example_lists_every_setting_and_alias():
    assert [var for var in SETTING_VARS + ALIAS_VARS if var not in commented_assignments()] == []


def test_env_example_sets_nothing_until_a_line_is_uncommented():
    active = [
        line
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert active == []


def test_env_example_uncommented_is_exactly_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # FORMRELAY_INSTANCE_PATH=instance is relative
    assert load_settings(commented_assignments()) == load_settings({})


# -- the command line ------------------------------------------------------------------------
def own_commands(group: click.Group, prefix: str = "formrelay") -> list[str]:
    """formrelay's commands and subcommands (Flask's own run/shell/routes left out)."""
    found: list[str] = []
    for name, command in sorted(group.commands.items()):
        if not (command.callback and command.callback.__module__.startswith("formrelay")):
            continue
        found.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            found.extend(own_commands(command, f"{prefix} {name}"))
    return found


def test_every_command_has_its_help_in_the_cli_doc():
    # `db` is Flask-Migrate's group, added to the app by formrelay; `db upgrade` is ours to run.
    expected = ["formrelay", *own_commands(cli), "formrelay db", "formrelay db upgrade"]
    documented = generator.documented_commands(CLI_DOC.read_text())
    assert [command for command in expected if command not in documented] == []


def test_the_help_in_the_cli_doc_is_current(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMRELAY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")  # Flask's CLI sets it; undone after
    monkeypatch.chdir(tmp_path)  # no .env is found from here
    doc = CLI_DOC.read_text()
    assert generator.render(doc) == doc, (
        "docs/cli.md is out of date: run `.venv/bin/python scripts/generate-cli-docs`"
    )
