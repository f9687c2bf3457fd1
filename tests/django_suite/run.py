#!/usr/bin/env python3
"""Run Django's own ``sessions_tests`` against qsessions, the way third-party database backends run Django's suite.

    .venv/bin/python tests/django_suite/run.py [--db sqlite|postgresql|mariadb] [--cache locmem|redis]
        [--engine db|cached_db] [--no-src] [--min-tests N] [-- extra runtests.py arguments]

The sdist of the Django that this interpreter imports is downloaded with pip once, and its ``tests/`` tree is kept
in ``.django-suite/<version>/`` at the repository root (not committed). The copy is re-pointed at qsessions:

- ``DatabaseSession``, ``CacheDBSession``, ``Session`` and ``SessionMiddleware`` in ``sessions_tests/tests.py``
  are imported from qsessions, and ``DatabaseSessionTests.session_engine`` names ``qsessions.backends.db``. So the
  db, cached_db and middleware test classes (and their ``*WithTimeZone`` subclasses) exercise our code.
- ``runtests.py`` installs ``qsessions`` (ahead of ``django.contrib.sessions``, which stays: Django's file, cache,
  signed-cookie and custom-model tests and its ``clearsessions`` command need it) and uses our middleware.
- ``CustomDatabaseSessionTests`` and ``sessions_tests/models.py`` stay as Django ships them: they test Django's
  extension point (a custom ``AbstractBaseSession`` model with a ``DBStore`` subclass), not our engines.

The SESSION_ENGINE setting (used by the middleware tests and ``Session.get_session_store_class()``) is
``qsessions.backends.<--engine>``. ``--no-src`` leaves ``src/`` off the path, to test an installed qsessions, such as
a published release in another virtualenv. The run fails if any test fails or errors, or if fewer than
``--min-tests`` (250) tests ran or exercised qsessions (Django 5.2 to 6.1: about 650 in all, 292 on our classes), so
it cannot pass by running nothing; pass ``--min-tests 0`` with a narrower label, e.g. ``-- sessions_tests.tests.X``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SETTINGS = "tests.django_suite.settings"
MARKER = ".qsessions-rewrite"

# (file under tests/, text Django ships, our text). Every one must match, or the run stops: a new Django release
# that moved things must be looked at, not silently run against Django's own engines.
REWRITES: list[tuple[str, str, str]] = [
    (
        "sessions_tests/tests.py",
        "from django.contrib.sessions.backends.cached_db import SessionStore as CacheDBSession\n",
        "from qsessions.backends.cached_db import SessionStore as CacheDBSession\n",
    ),
    (
        "sessions_tests/tests.py",
        "from django.contrib.sessions.backends.db import SessionStore as DatabaseSession\n",
        "from qsessions.backends.db import SessionStore as DatabaseSession\n",
    ),
    (
        "sessions_tests/tests.py",
        "from django.contrib.sessions.middleware import SessionMiddleware\n",
        "from qsessions.middleware import SessionMiddleware\n",
    ),
    (
        "sessions_tests/tests.py",
        "from django.contrib.sessions.models import Session\n",
        "from qsessions.models import Session\n",
    ),
    (
        "sessions_tests/tests.py",
        'session_engine = "django.contrib.sessions.backends.db"\n',
        'session_engine = "qsessions.backends.db"\n',
    ),
    (
        "runtests.py",
        '    "django.contrib.sessions",\n',
        '    "qsessions",\n    "django.contrib.sessions",\n',
    ),
    (
        "runtests.py",
        '    "django.contrib.sessions.middleware.SessionMiddleware",\n',
        '    "qsessions.middleware.SessionMiddleware",\n',
    ),
]
REWRITES_ID = hashlib.sha256(repr(REWRITES).encode()).hexdigest()[:16]


def django_version(env: dict[str, str]) -> str:
    """The version of the Django that the test run will import."""
    out = subprocess.run(
        [sys.executable, "-c", "import django; print(django.__version__)"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def fetch_sdist(version: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    found = [p for p in folder.iterdir() if p.name.lower() == f"django-{version}.tar.gz"]
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"django=={version}"]
    subprocess.run([*cmd, "-d", str(folder)], check=True)
    found = [p for p in folder.iterdir() if p.name.lower() == f"django-{version}.tar.gz"]
    if not found:
        sys.exit(f"pip did not leave django-{version}.tar.gz in {folder}")
    return found[0]


def rewrite(tests_dir: Path) -> None:
    for rel, old, new in REWRITES:
        path = tests_dir / rel
        text = path.read_text(encoding="utf-8")
        if text.count(old) != 1:
            sys.exit(f"{rel}: expected {old.strip()!r} exactly once, found it {text.count(old)} times; update REWRITES")
        path.write_text(text.replace(old, new), encoding="utf-8")
    (tests_dir / MARKER).write_text(REWRITES_ID + "\n", encoding="utf-8")


def prepare(version: str, cache_root: Path) -> Path:
    """Django's tests/ tree for this version, re-pointed at qsessions; reused while REWRITES is unchanged."""
    if ".dev" in version or not version[0].isdigit():
        sys.exit(f"Django {version} is not a release: there is no sdist to download")
    folder = cache_root / version
    tests_dir = folder / "tests"
    marker = tests_dir / MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == REWRITES_ID:
        return tests_dir
    sdist = fetch_sdist(version, folder)
    staging = Path(tempfile.mkdtemp(prefix="extract-", dir=folder))
    try:
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"]]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # Python before 3.10.12 / 3.11.4
                tar.extractall(staging, members=members)
        (extracted,) = staging.iterdir()
        rewrite(extracted / "tests")
        shutil.rmtree(tests_dir, ignore_errors=True)
        (extracted / "tests").rename(tests_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tests_dir


def delete_redis_keys(url: str, prefix: str) -> None:
    try:
        import redis
    except ImportError:
        return
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def key_lines(detail: str, limit: int = 14) -> str:
    """A traceback from the test's own frame on, without the asyncio and unittest plumbing above it."""
    lines = detail.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "') and "sessions_tests" in line]
    if starts:
        lines = lines[starts[-1] :]
    if len(lines) > limit:  # keep the head (the test's line, our frames) and the exception at the end
        lines = [*lines[: limit - 4], "  ...", *lines[-3:]]
    return "\n".join(lines)


def summarize(report: dict, min_tests: int) -> int:
    records = list(report["records"].values())
    classes: dict[str, dict[str, int]] = {}
    for rec in records:
        counts = classes.setdefault(rec["class"], {"passed": 0, "failed": 0, "skipped": 0})
        counts["failed" if rec["status"] == "error" else rec["status"]] += 1
    ours_classes = {r["class"] for r in records if (r["engine"] or "").startswith("qsessions.")}
    engines = sorted({f"{r['class']}: {r['engine']}" for r in records if r["engine"]})

    print("\n" + "=" * 78)
    print(f"Django {report['django']} sessions_tests, Python {report['python']}, qsessions from {report['qsessions']}")
    print(f"database: {report['database']}; cache: {report['cache']}; SESSION_ENGINE: {report['session_engine']}")
    print("Session code under test, per class:")
    for line in engines:
        print(f"  {line}")
    print(f"\n  {'class':<42}{'ran':>5}{'passed':>8}{'failed':>8}{'skipped':>9}")
    for name in sorted(classes):
        c = classes[name]
        mark = "*" if name in ours_classes else " "
        ran = c["passed"] + c["failed"]
        print(f"{mark} {name:<42}{ran:>5}{c['passed']:>8}{c['failed']:>8}{c['skipped']:>9}")
    print("  (* = exercises qsessions)")

    failed = [r for r in records if r["status"] in ("failed", "error")]
    for rec in failed:
        print(f"\n--- {rec['status'].upper()}: {rec['class']}.{rec['test']}")
        print(key_lines(rec["detail"]))

    def totals(recs: list[dict]) -> tuple[int, int, int]:
        passed = sum(r["status"] == "passed" for r in recs)
        bad = sum(r["status"] in ("failed", "error") for r in recs)
        return passed, bad, sum(r["status"] == "skipped" for r in recs)

    ours = [r for r in records if r["class"] in ours_classes]
    o_passed, o_failed, o_skipped = totals(ours)
    passed, n_failed, skipped = totals(records)
    print(f"\nqsessions engines: {o_passed + o_failed} ran, {o_passed} passed, {o_failed} failed, {o_skipped} skipped")
    print(f"all classes:       {passed + n_failed} ran, {passed} passed, {n_failed} failed, {skipped} skipped")
    status = 0
    if n_failed:
        status = 1
    if passed + n_failed < min_tests:
        print(f"ERROR: only {passed + n_failed} tests ran, fewer than {min_tests}: did the suite load?")
        status = 1
    if o_passed + o_failed < min_tests:
        print(f"ERROR: only {o_passed + o_failed} tests exercised qsessions, fewer than {min_tests}")
        status = 1
    print(f"django-sessions-suite: {passed} passed, {n_failed} failed, {skipped} skipped")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "mariadb"], default="sqlite")
    parser.add_argument("--cache", choices=["locmem", "redis"], default="locmem")
    parser.add_argument("--engine", choices=["db", "cached_db"], default="db", help="SESSION_ENGINE for middleware")
    parser.add_argument("--no-src", action="store_true", help="test the installed qsessions, not this checkout's src/")
    parser.add_argument(
        "--min-tests", type=int, default=250, help="fail if fewer tests ran, or exercised qsessions (default: 250)"
    )
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".django-suite", help="where Django's tests are kept")
    parser.add_argument("extra", nargs="*", help="after --: more runtests.py arguments, e.g. a test label")
    args = parser.parse_args()

    env = dict(os.environ)
    path = [str(REPO)] if args.no_src else [str(REPO / "src"), str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(path + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    results = Path(tempfile.mkdtemp(prefix="qsessions-django-suite-")) / "results.json"
    redis_url = env.setdefault("QSESSIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    key_prefix = f"qsessions-django-suite-{uuid.uuid4().hex[:12]}"
    env.update(
        QSESSIONS_TEST_DB=args.db,
        QSESSIONS_TEST_CACHE=args.cache,
        QSESSIONS_SUITE_ENGINE=f"qsessions.backends.{args.engine}",
        QSESSIONS_SUITE_RESULTS=str(results),
        QSESSIONS_SUITE_KEY_PREFIX=key_prefix,
    )

    version = django_version(env)
    tests_dir = prepare(version, args.cache_dir.resolve())
    # A label such as sessions_tests.tests.DatabaseSessionTests after -- narrows the run (then pass --min-tests).
    labels = [] if any(a.startswith("sessions_tests") for a in args.extra) else ["sessions_tests"]
    cmd = [sys.executable, "runtests.py", *args.extra, f"--settings={SETTINGS}"]
    cmd += ["--parallel=1", "--verbosity=2", "--noinput", *labels]
    print(f"$ cd {tests_dir} && {' '.join(cmd)}  (db={args.db}, cache={args.cache}, engine={args.engine})", flush=True)
    try:
        code = subprocess.run(cmd, cwd=tests_dir, env=env, check=False).returncode
        report = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else None
    finally:
        shutil.rmtree(results.parent, ignore_errors=True)
        if args.cache == "redis":
            delete_redis_keys(redis_url, key_prefix)
    if report is None:
        print(f"runtests.py exited {code} without reporting any test")
        print("django-sessions-suite: 0 passed, 1 failed")
        return 1
    status = summarize(report, args.min_tests)
    if code and not status:
        print(f"ERROR: runtests.py exited {code} although every recorded test passed")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
