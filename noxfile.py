"""The Django/Python matrix, one session per Django series: ``nox -s tests-5.2``, ``nox -s tests-6.1``.

Each session runs every Python of its series against every database (SQLite with the local-memory cache,
PostgreSQL and MariaDB with Redis), through ``scripts/test``: that script builds the virtualenvs
(``.venv-django<series>-py<python>``), so nox makes none of its own. Pick one combination by its name, e.g.
``nox -s "tests-6.1(python='3.13', db='postgresql')"``; ``nox -l`` lists them. What follows ``--`` goes to pytest.
A Python not found on PATH (``python3.12``) or in pyenv's tree skips its sessions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.error_on_missing_interpreters = False

ROOT = Path(__file__).resolve().parent

#: Django series -> the Pythons it supports here (as in pyproject.toml's classifiers).
MATRIX: dict[str, list[str]] = {
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


def _find_python(version: str) -> str | None:
    """An interpreter of this minor version that runs: on PATH, or in pyenv's tree (as .ci/run looks for them).

    Each is tried, because a pyenv shim is on PATH even for a version that is not selected, and fails when run.
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


def _tests_session(django: str) -> Callable[[nox.Session, str, str], None]:
    @nox.parametrize("db", list(DATABASES))
    @nox.parametrize("python", MATRIX[django])
    def tests(session: nox.Session, python: str, db: str) -> None:
        interpreter = _find_python(python)
        if interpreter is None:
            session.skip(f"no Python {python} found")
        env = {
            **DATABASES[db],
            "QSESSIONS_DJANGO": django,
            "QSESSIONS_PYTHON": interpreter,
            "QSESSIONS_VENV": f".venv-django{django}-py{python}",
        }
        session.run(str(ROOT / "scripts" / "test"), "-q", *session.posargs, env=env, external=True)

    tests.__doc__ = f"Django {django} on Python {', '.join(MATRIX[django])}, on each database."
    return tests


for _django in MATRIX:
    nox.session(name=f"tests-{_django}", venv_backend="none")(_tests_session(_django))
