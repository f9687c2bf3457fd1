"""The Django/Python matrix, one session per Django series: ``nox -s tests-5.2``, ``nox -s tests-6.1``.

Each session runs every Python of its series against every database (SQLite with the local-memory cache,
PostgreSQL and MariaDB with Redis), through ``scripts/test``: that script builds the virtualenvs
(``.venv-django<series>-py<python>``), so nox makes none of its own. Pick one combination by its name, e.g.
``nox -s "tests-6.1(python='3.13', db='postgresql')"``; ``nox -l`` lists them. What follows ``--`` goes to pytest.
A Python not found on PATH (``python3.12``) or in pyenv's tree skips its sessions. The matrix itself is
``scripts/matrix.py``'s, which CI reads too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "scripts"))

from matrix import DATABASES, SUPPORTED, find_python  # noqa: E402

nox.options.default_venv_backend = "none"
nox.options.error_on_missing_interpreters = False


def _tests_session(django: str) -> Callable[[nox.Session, str, str], None]:
    @nox.parametrize("db", list(DATABASES))
    @nox.parametrize("python", SUPPORTED[django])
    def tests(session: nox.Session, python: str, db: str) -> None:
        interpreter = find_python(python)
        if interpreter is None:
            session.skip(f"no Python {python} found")
        env = {
            **DATABASES[db],
            "QSESSIONS_DJANGO": django,
            "QSESSIONS_PYTHON": interpreter,
            "QSESSIONS_VENV": f".venv-django{django}-py{python}",
        }
        session.run(str(ROOT / "scripts" / "test"), "-q", *session.posargs, env=env, external=True)

    tests.__doc__ = f"Django {django} on Python {', '.join(SUPPORTED[django])}, on each database."
    return tests


for _django in SUPPORTED:
    nox.session(name=f"tests-{_django}", venv_backend="none")(_tests_session(_django))
