"""Requests through Django's handler and middleware stack, for Django's session engines and ours, side by side.

    .venv/bin/python bench/requests.py [--db sqlite|postgresql|mariadb] [--cache locmem|redis] [--rounds 20]
        [--requests 100] [--json PATH] [--instructions] [--only TEXT]

The engines take turns within each round (in an order that rotates), so drift on the machine hits all of them alike.
For each scenario it prints the median time per request, its ratio to Django's engine of the same kind (``db`` or
``cached_db``), and the SQL statements and cache round-trips one request costs. ``--json PATH`` also writes those
figures to a file, for ``docs/chart.py``.

``--instructions`` counts CPU instructions per request instead of timing them, with valgrind's callgrind: the same
count on every run, whatever else the machine does. Each engine and scenario runs in a child process under
callgrind, which counts only inside the ``--requests`` requests made after 20 unmeasured ones (they run inside a
ctypes callback, and callgrind collects inside libffi's closure function alone).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

ENGINES = {
    "django db": ("django.contrib.sessions.backends.db", "django.contrib.sessions.middleware.SessionMiddleware"),
    "qsessions db": ("qsessions.backends.db", "qsessions.middleware.SessionMiddleware"),
    "django cached_db": (
        "django.contrib.sessions.backends.cached_db",
        "django.contrib.sessions.middleware.SessionMiddleware",
    ),
    "qsessions cached_db": ("qsessions.backends.cached_db", "qsessions.middleware.SessionMiddleware"),
}
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def configure(db: str, cache: str) -> None:
    _django.configure(db, cache, ROOT_URLCONF=__name__)


# Views: what a page does with its session in each scenario.


def anonymous(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("hello")


def read(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(request.user.get_username())


def write(request: Any) -> Any:
    from django.http import HttpResponse

    request.session["counter"] = request.session.get("counter", 0) + 1
    return HttpResponse(str(request.session["counter"]))


def login_view(request: Any) -> Any:
    from django.contrib.auth import authenticate, login
    from django.http import HttpResponse

    login(request, authenticate(request, username="bench", password="bench"))
    return HttpResponse("ok")


def _urls() -> list[Any]:
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    return [
        path("anonymous/", anonymous),
        path("read/", read),
        path("write/", write),
        path("login/", csrf_exempt(login_view)),
    ]


def make_client(engine: str) -> Any:
    from django.test import Client, override_settings

    session_engine, session_middleware = ENGINES[engine]
    middleware = [
        session_middleware,
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    with override_settings(SESSION_ENGINE=session_engine, MIDDLEWARE=middleware):
        client = Client(HTTP_USER_AGENT=USER_AGENT)
        client.handler.load_middleware()
    client.engine = session_engine
    return client


def signed_in(engine: str) -> Any:
    client = make_client(engine)
    assert client.post("/login/").status_code == 200
    return client


# Each scenario: (set-up once per engine and round, one request). A request returns nothing; failures raise.
def scenario_anonymous(engine: str) -> Callable[[int], None]:
    client = make_client(engine)
    return lambda index: _ok(client.get("/anonymous/"))


def scenario_read(engine: str) -> Callable[[int], None]:
    client = signed_in(engine)
    return lambda index: _ok(client.get("/read/"))


def scenario_write(engine: str) -> Callable[[int], None]:
    client = signed_in(engine)
    return lambda index: _ok(client.get("/write/"))


def scenario_login(engine: str) -> Callable[[int], None]:
    client = make_client(engine)

    def one(index: int) -> None:
        client.cookies.clear()
        _ok(client.post("/login/"))

    return one


def scenario_new_ip(engine: str) -> Callable[[int], None]:
    client = signed_in(engine)
    return lambda index: _ok(client.get("/read/", REMOTE_ADDR=f"10.0.{index // 250 % 250}.{index % 250 + 1}"))


def scenario_new_user_agent(engine: str) -> Callable[[int], None]:
    client = signed_in(engine)
    return lambda index: _ok(client.get("/read/", HTTP_USER_AGENT=f"{USER_AGENT} build/{index}"))


def _ok(response: Any) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")


SCENARIOS = {
    "anonymous, no session": scenario_anonymous,
    "signed in, reads session (hot path)": scenario_read,
    "signed in, writes session": scenario_write,
    "login (new session)": scenario_login,
    "signed in, new IP every request": scenario_new_ip,
    "signed in, new user agent every request": scenario_new_user_agent,
}


WARM_UP = 20


def count_instructions(options: argparse.Namespace) -> None:
    """Instructions per request of each engine in each scenario, counted by callgrind in child processes."""
    print(f"database={options.db} cache={options.cache} requests={options.requests}, instructions per request")
    print(f"{'scenario':40} {'engine':20} {'instructions':>12} {'ratio':>7}")
    for scenario_index, title in enumerate(SCENARIOS):
        if options.only not in title:
            continue
        counts: dict[str, float] = {}
        for engine_index, engine in enumerate(ENGINES):
            command = [
                "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--collect-atstart=no",
                "--toggle-collect=*closure_fcn*", sys.executable, __file__, "--db", options.db, "--cache",
                options.cache, "--requests", str(options.requests), "--count", str(engine_index), str(scenario_index),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            collected = re.search(r"Collected : (\d+)", done.stderr)
            if done.returncode != 0 or collected is None:
                raise RuntimeError(f"{engine}, {title}: callgrind failed\n{done.stderr[-3000:]}")
            counts[engine] = int(collected.group(1)) / options.requests
            ratio = counts[engine] / counts.get(f"django {engine.split()[1]}", counts[engine])
            print(f"{title:40} {engine:20} {counts[engine]:12,.0f} {ratio:7.3f}", flush=True)


def run_counted(options: argparse.Namespace) -> None:
    """In a child under callgrind: ``--requests`` requests of one engine and scenario, inside a ctypes callback."""
    engine, scenario = list(ENGINES)[options.count[0]], list(SCENARIOS.values())[options.count[1]]
    one = scenario(engine)
    for index in range(WARM_UP):
        one(index)

    def measured() -> None:
        for index in range(WARM_UP, WARM_UP + options.requests):
            one(index)

    gc.collect()
    gc.disable()
    ctypes.CFUNCTYPE(None)(measured)()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "mariadb"], default="sqlite")
    parser.add_argument("--cache", choices=["locmem", "redis"], default="locmem")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100, help="requests per engine, scenario and round")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results to this file as JSON")
    parser.add_argument("--instructions", action="store_true", help="count instructions per request (callgrind)")
    parser.add_argument("--only", default="", metavar="TEXT", help="only the scenarios whose title contains TEXT")
    parser.add_argument("--count", type=int, nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.instructions:
        count_instructions(options)
        return

    configure(options.db, options.cache)
    import django

    django.setup()
    globals()["urlpatterns"] = _urls()
    from django.contrib.auth import get_user_model
    from django.core.cache import caches
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    caches["default"].clear()
    get_user_model().objects.create_user("bench", password="bench")
    if options.count:
        run_counted(options)
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
        return
    counter = _django.Counter()

    print(f"database={options.db} cache={options.cache} rounds={options.rounds} requests={options.requests}")
    print(f"{'scenario':40} {'engine':20} {'median µs':>10} {'ratio':>7} {'SQL/req':>8} {'cache/req':>9}")
    engines = list(ENGINES)
    results: list[dict[str, Any]] = []
    for title, scenario in SCENARIOS.items():
        if options.only not in title:
            continue
        times: dict[str, list[float]] = {engine: [] for engine in engines}
        sql: dict[str, int] = dict.fromkeys(engines, 0)
        cache_ops: dict[str, int] = dict.fromkeys(engines, 0)
        for round_index in range(options.rounds):
            order = engines[round_index % len(engines) :] + engines[: round_index % len(engines)]
            for engine in order:
                one = scenario(engine)
                gc.collect()
                counter.sql = counter.cache = 0
                for index in range(options.requests):
                    started = time.perf_counter()
                    one(index)
                    times[engine].append(time.perf_counter() - started)
                sql[engine] += counter.sql
                cache_ops[engine] += counter.cache
        total = options.rounds * options.requests
        for engine in engines:
            median = statistics.median(times[engine])
            kind = engine.split()[1]
            ratio = median / statistics.median(times[f"django {kind}"])
            print(
                f"{title:40} {engine:20} {median * 1e6:10.0f} {ratio:7.3f} {sql[engine] / total:8.2f} "
                f"{cache_ops[engine] / total:9.2f}"
            )
            results.append(
                {
                    "scenario": title,
                    "engine": engine,
                    "median_us": round(median * 1e6, 1),
                    "ratio": round(ratio, 3),
                    "sql_per_request": sql[engine] / total,
                    "cache_per_request": cache_ops[engine] / total,
                }
            )
    connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
    if options.json:
        run = {key: getattr(options, key) for key in ("db", "cache", "rounds", "requests")}
        run |= {"django": django.get_version(), "python": platform.python_version(), "results": results}
        options.json.write_text(json.dumps(run, indent=2) + "\n")


if __name__ == "__main__":
    main()
