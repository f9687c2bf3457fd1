"""The Django/Python matrix, defined once: ``noxfile.py`` imports it, ``.ci/run`` asks it from the shell.

    python3 scripts/matrix.py python 3.11   the path of a working Python 3.11 (exit 1 if there is none)
    python3 scripts/matrix.py ci            what CI runs: a line "<django> <python> <database>..." per series

It needs nothing but the standard library: CI runs it before any virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Django series -> the Pythons it supports (as in pyproject.toml's classifiers).
SUPPORTED: dict[str, list[str]] = {
    "5.2": ["3.10", "3.11", "3.12", "3.13"],
    "6.0": ["3.12", "3.13"],
    "6.1": ["3.12", "3.13"],
}

#: Database -> the environment scripts/test reads (see tests/settings.py).
DATABASES: dict[str, dict[str, str]] = {
    "sqlite": {"QSESSIONS_TEST_DB": "sqlite", "QSESSIONS_TEST_CACHE": "locmem"},
    "postgresql": {"QSESSIONS_TEST_DB": "postgresql", "QSESSIONS_TEST_CACHE": "redis"},
    "mariadb": {"QSESSIONS_TEST_DB": "mariadb", "QSESSIONS_TEST_CACHE": "redis"},
}

#: The slice of the matrix CI runs: each series on one Python, the servers on the oldest and the newest series and the
#: middle one on SQLite alone, so that CI stays within its time.
CI: dict[str, tuple[str, list[str]]] = {
    "5.2": ("3.11", ["sqlite", "postgresql", "mariadb"]),
    "6.0": ("3.12", ["sqlite"]),
    "6.1": ("3.13", ["sqlite", "postgresql", "mariadb"]),
}


def find_python(version: str) -> str | None:
    """An interpreter of this minor version that runs: on ``PATH``, or in pyenv's tree.

    Each is tried, because a pyenv shim is on ``PATH`` even for a version that is not selected, and fails when run.
    """
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(f"python{version}"), *map(str, sorted(pyenv.glob(f"{version}.*/bin/python{version}")))]
    for candidate in candidates:
        if (
            candidate is not None
            and subprocess.run([candidate, "-c", "import sys"], capture_output=True).returncode == 0
        ):
            return candidate
    return None


def main(arguments: list[str]) -> int:
    if arguments[:1] == ["python"] and len(arguments) == 2:
        found = find_python(arguments[1])
        if found is None:
            print(f"no Python {arguments[1]} found", file=sys.stderr)
            return 1
        print(found)
        return 0
    if arguments == ["ci"]:
        for django, (python, databases) in CI.items():
            print(django, python, *databases)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
