"""Django's test runner, also writing each test's outcome to the JSON file named by ``QSESSIONS_SUITE_RESULTS``.

run.py reads that file for its per-class summary, rather than scraping the ``-v 2`` text output.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unittest
from typing import Any

import django
from django.test.runner import DiscoverRunner

# How unittest names a failed class or module fixture: "setUpClass (sessions_tests.tests.SomeTests)".
_FIXTURE_ID = re.compile(r"^(\w+) \((.+)\)$")


def _describe(test: Any) -> dict[str, Any]:
    """Class, method and the session code a test exercises (its store class, or the middleware for those tests)."""
    match = _FIXTURE_ID.match(test.id())
    if match:  # an error outside any test, e.g. in setUpClass
        return {"class": match.group(2).rsplit(".", 1)[-1], "test": match.group(1), "engine": None}
    engine = None
    backend = getattr(test, "backend", None)
    if isinstance(backend, type):
        engine = f"{backend.__module__}.{backend.__qualname__}"
    elif "Middleware" in type(test).__name__:
        middleware = getattr(sys.modules.get(type(test).__module__), "SessionMiddleware", None)
        if isinstance(middleware, type):
            engine = f"{middleware.__module__}.{middleware.__qualname__}"
    return {"class": type(test).__name__, "test": getattr(test, "_testMethodName", test.id()), "engine": engine}


class RecordingResultMixin:
    """Keeps one record per test: passed, failed, error or skipped, with the traceback or reason."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: dict[str, dict[str, Any]] = {}

    def _record(self, test: Any, status: str, detail: str = "") -> None:
        record = self.records.setdefault(test.id(), {**_describe(test), "status": status, "detail": ""})
        if status in ("failed", "error") or record["status"] not in ("failed", "error"):
            record["status"] = status
        if detail:
            record["detail"] = (record["detail"] + "\n" + detail).strip()

    def _format(self, err: Any, test: Any) -> str:
        return self._exc_info_to_string(err, test)  # type: ignore[attr-defined]

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)  # type: ignore[misc]
        self._record(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)  # type: ignore[misc]
        self._record(test, "failed", self._format(err, test))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)  # type: ignore[misc]
        self._record(test, "error", self._format(err, test))

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)  # type: ignore[misc]
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[misc]
        self._record(test, "passed", "expected failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)  # type: ignore[misc]
        self._record(test, "failed", "unexpected success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)  # type: ignore[misc]
        if err is not None:
            status = "failed" if issubclass(err[0], test.failureException) else "error"
            self._record(test, status, f"{subtest.id()}\n{self._format(err, test)}")


class RecordingRunner(DiscoverRunner):
    def get_resultclass(self) -> type[unittest.TestResult]:
        base = super().get_resultclass() or unittest.TextTestResult
        return type(f"Recording{base.__name__}", (RecordingResultMixin, base), {})

    def run_suite(self, suite: unittest.TestSuite, **kwargs: Any) -> unittest.TestResult:
        result = super().run_suite(suite, **kwargs)
        path = os.environ.get("QSESSIONS_SUITE_RESULTS")
        if path:
            from django.conf import settings
            from django.db import connection

            import qsessions

            report = {
                "django": django.__version__,
                "python": sys.version.split()[0],
                "qsessions": os.path.dirname(qsessions.__file__ or ""),
                "database": f"{connection.vendor} {connection.settings_dict['NAME']}",
                "cache": settings.CACHES["default"]["BACKEND"],
                "session_engine": settings.SESSION_ENGINE,
                "tests_run": result.testsRun,
                "records": getattr(result, "records", {}),
            }
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(report, fh, indent=1)
        return result
