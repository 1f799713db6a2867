"""The lock files (what `make install`, `make test` and CI install) match the requirement lists people edit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(==|>=|<=|~=|<|>|!=)?\s*([^\s;#,]*)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> dict[str, str]:
    """Name -> pinned version ('' when a range or nothing), from one requirements file (not its -r includes)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = REQUIREMENT.match(line)
        found[normalise(match[1])] = match[3] if match[2] == "==" else ""
    return found


def locked(path: Path) -> dict[str, str]:
    return {normalise(name): version
            for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", path.read_text(), re.M)}


@pytest.mark.parametrize(("listed", "lock"), [("requirements.txt", "requirements.lock"),
                                              ("requirements.txt", "requirements-dev.lock"),
                                              ("requirements-dev.txt", "requirements-dev.lock")])
def test_every_listed_package_is_locked_at_its_pin(listed, lock):
    # A package added to a list without `make lock` would be missing on a fresh machine (CI installs the lock).
    pins = locked(ROOT / lock)
    missing = {name: version for name, version in requirements(ROOT / listed).items()
               if name not in pins or (version and pins[name] != version)}
    assert not missing, f"{listed} has {missing} that {lock} lacks: run `make lock`"


def test_every_line_of_the_locks_carries_hashes():
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        assert "-e " not in text  # pip's --require-hashes refuses editable lines: the client is installed apart
        assert text.count("==") == len(re.findall(r"^\S+==\S+ \\\n\s+--hash=sha256:", text, re.M)), lock
