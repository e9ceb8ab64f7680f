"""What a plain install gets: every import of formrelay's is a runtime dependency, and the
buildpack's lock (requirements.txt, .python-version) agrees with pyproject.toml.

tests/deploy installs the lock into a fresh venv and runs the Procfile; these checks are the
quick half that runs in `make test`.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterable, Iterator
from importlib import metadata

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from .servers import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(line) for line in PROJECT["dependencies"]]
DEV = [Requirement(line) for line in PROJECT["optional-dependencies"]["dev"]]


def lock_lines() -> list[str]:
    text = (ROOT / "requirements.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def pins() -> dict[str, Requirement]:
    """requirements.txt's pins by canonical name (the final `.` left out)."""
    return {
        canonicalize_name(req.name): req
        for req in (Requirement(line) for line in lock_lines() if line != ".")
    }


def _imports(tree: ast.Module) -> Iterator[str]:
    """The top-level modules a module imports absolutely, outside `if TYPE_CHECKING:`."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def third_party_imports() -> dict[str, list[str]]:
    """Each third-party module formrelay imports at run time, with the files importing it."""
    found: dict[str, list[str]] = {}
    package = ROOT / "src" / "formrelay"
    for path in sorted(package.rglob("*.py")):
        for module in set(_imports(ast.parse(path.read_text(), str(path)))):
            if module in sys.stdlib_module_names or module == "formrelay":
                continue
            found.setdefault(module, []).append(str(path.relative_to(ROOT)))
    return found


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """The canonical names of `requirements` and everything they require, as installed
    here (the development venv holds the runtime and the dev dependencies)."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": extra}) for extra in (req.extras or {""})
            ):
                todo.append(sub)
    return seen


def test_every_module_formrelay_imports_is_a_runtime_dependency():
    """A module that arrives only with the dev extra, or only with another package, breaks a
    plain `pip install .` (cryptography did: every SNS message answered 500)."""
    declared = {canonicalize_name(req.name) for req in RUNTIME}
    providers = metadata.packages_distributions()
    missing = {}
    for module, files in third_party_imports().items():
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions & declared:
            missing[module] = (sorted(distributions) or ["not installed"], files)
    assert missing == {}, "imported at run time but not in [project] dependencies"


def test_the_lock_pins_every_runtime_requirement_within_its_specifier():
    pinned = pins()
    problems = []
    for req in RUNTIME:
        if req.marker is not None and not req.marker.evaluate():
            continue
        pin = pinned.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req.name} is not pinned")
            continue
        version = next(iter(pin.specifier)).version
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{pin} does not satisfy {req}")
        if not req.extras <= pin.extras:
            problems.append(f"{pin} lacks the extras of {req}")
    assert problems == [], "requirements.txt is out of step with pyproject.toml: run `make lock`"


def test_the_lock_pins_every_package_exactly_and_ends_with_the_project():
    """`==` and no markers (the lock is made for one Python), and `.` last, so that the
    buildpack installs the `formrelay` command and formrelay.wsgi."""
    lines = lock_lines()
    assert lines[-1] == "."
    loose = [
        line
        for line in lines[:-1]
        if [s.operator for s in Requirement(line).specifier] != ["=="] or Requirement(line).marker
    ]
    assert loose == []
    assert "." not in lines[:-1]


def test_the_lock_pins_no_development_only_package():
    dev_only = closure(DEV) - closure(RUNTIME)
    assert sorted(dev_only & set(pins())) == []


def test_python_version_is_one_that_requires_python_admits():
    version = (ROOT / ".python-version").read_text().strip()
    assert len(Version(version).release) == 2, "major.minor: the buildpack takes the latest patch"
    assert SpecifierSet(PROJECT["requires-python"]).contains(version)
