"""Requests through a real server (gunicorn, or uvicorn for ASGI) under load from wrk, for Django's session engines
and ours.

    .venv/bin/python bench/e2e.py [--db sqlite|postgresql|mariadb] [--cache locmem|redis] [--seconds 10]
        [--rounds 3] [--workers 2] [--connections 4] [--server gunicorn|uvicorn]

Needs gunicorn and uvicorn (dependency group ``bench``) and wrk (``apt-get install wrk``). A smoke run takes about
25 s: ``--seconds 1 --rounds 1``. Each engine gets its own server on a free loopback port: gunicorn's sync workers
(one thread each) serve this module as a WSGI application, uvicorn's workers as an ASGI one whose views are async,
so that a request reads its session and user through the engine's async API. The engine is named by an environment
variable. Database connections are persistent (``CONN_MAX_AGE``) under gunicorn, as on a production site; under
ASGI, where each request's sync code runs in a thread of its own that would keep a connection each, they come from a
pool on PostgreSQL (psycopg's, as Django's documentation advises) and are opened per request elsewhere.

Within each round the engines take turns (in an order that rotates), after one warm-up run each that is thrown
away. For each scenario it prints the median requests/s over the rounds, its ratio to Django's engine of the same
kind (``db`` or ``cached_db``; above 1 is faster), and the median p50/p99 latency. wrk shares the machine with the
server, the database and the cache, so the numbers are for comparing engines, not for sizing a site.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from importlib import import_module
from pathlib import Path
from typing import Any

import _django
from _servers import Server, free_port

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
SCENARIOS = {"anonymous, no session": "/anonymous/", "signed in, reads session (hot path)": "/read/"}
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
WARM_UP_SECONDS = 2
# How the benchmark tells each gunicorn what to serve.
ENV_ENGINE, ENV_DB, ENV_CACHE, ENV_DB_NAME, ENV_SERVER = (
    f"QSESSIONS_E2E_{name}" for name in ("ENGINE", "DB", "CACHE", "DB_NAME", "SERVER")
)


def configure(db: str, cache: str, engine: str, db_name: str | None = None, asynchronous: bool = False) -> None:
    session_engine, session_middleware = ENGINES[engine]
    middleware = [
        session_middleware,
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    # A failed request's traceback goes to the server's log.
    logging = {
        "version": 1,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
    }
    _django.configure(
        db,
        cache,
        db_name,
        # Under ASGI each request runs its sync code in a thread of its own, which would keep a connection each: a
        # pool on PostgreSQL, as Django's documentation advises, and elsewhere a connection per request.
        conn_max_age=0 if asynchronous else 60,
        pool=asynchronous,
        ROOT_URLCONF=__name__,
        MIDDLEWARE=middleware,
        SESSION_ENGINE=session_engine,
        LOGGING=logging,
    )


# Views.


def anonymous(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("hello")


def read(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(request.user.get_username())


async def aread(request: Any) -> Any:
    from django.http import HttpResponse

    user = await request.auser()
    return HttpResponse(user.get_username())


async def aanonymous(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("hello")


def login_view(request: Any) -> Any:
    from django.contrib.auth import authenticate, login
    from django.http import HttpResponse

    login(request, authenticate(request, username="bench", password="bench"))
    return HttpResponse("ok")


def _urls(asynchronous: bool = False) -> list[Any]:
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    return [
        path("anonymous/", aanonymous if asynchronous else anonymous),
        path("read/", aread if asynchronous else read),
        path("login/", csrf_exempt(login_view)),
    ]


def _application() -> Any:
    """The WSGI application a gunicorn worker serves, or the ASGI one of a uvicorn worker, for the engine its
    environment names."""
    asynchronous = os.environ[ENV_SERVER] == "uvicorn"
    configure(os.environ[ENV_DB], os.environ[ENV_CACHE], os.environ[ENV_ENGINE], os.environ[ENV_DB_NAME], asynchronous)
    globals()["urlpatterns"] = _urls(asynchronous)
    if asynchronous:
        from django.core.asgi import get_asgi_application

        return get_asgi_application()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


# Set-up, in the benchmark's own process.


def sign_in(engine: str) -> str:
    """A signed-in session, made through the engine's own middleware from 127.0.0.1 and USER_AGENT, as wrk will
    send them (so qsessions sees the client it stored and has nothing to write). Returns its key."""
    from django.test import Client, override_settings

    session_engine, session_middleware = ENGINES[engine]
    middleware = [session_middleware, "django.contrib.auth.middleware.AuthenticationMiddleware"]
    with override_settings(SESSION_ENGINE=session_engine, MIDDLEWARE=middleware):
        client = Client(HTTP_USER_AGENT=USER_AGENT, REMOTE_ADDR="127.0.0.1")
        if client.post("/login/").status_code != 200:
            raise RuntimeError(f"{engine}: login failed")
    return client.cookies["sessionid"].value


def session_row(engine: str, session_key: str) -> tuple[Any, ...]:

    model = import_module(ENGINES[engine][0]).SessionStore.get_model_class()
    return tuple(model.objects.filter(session_key=session_key).values_list("session_data", "expire_date").get())


def start_server(engine: str, options: argparse.Namespace, db_name: str, log_dir: str) -> Server:
    """One gunicorn (sync workers, one thread each) or uvicorn serving one engine."""
    port = free_port()
    env = {
        **os.environ,
        ENV_ENGINE: engine,
        ENV_DB: options.db,
        ENV_CACHE: options.cache,
        ENV_DB_NAME: db_name,
        ENV_SERVER: options.server,
    }
    log = Path(log_dir) / f"{options.server}-{engine.replace(' ', '-')}.log"
    if options.server == "uvicorn":
        command = [
            sys.executable, "-m", "uvicorn",
            "--app-dir", str(Path(__file__).resolve().parent),
            "--workers", str(options.workers), "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log",
            f"{Path(__file__).stem}:application",
        ]  # fmt: skip
        return Server(engine, port, command, env, log)
    command = [
        sys.executable, "-m", "gunicorn",
        "--chdir", str(Path(__file__).resolve().parent),
        "--worker-class", "sync", "--workers", str(options.workers), "--threads", "1",
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", "--graceful-timeout", "5",
        f"{Path(__file__).stem}:application",
    ]  # fmt: skip
    return Server(engine, port, command, env, log)


def wait_signed_in(server: Server, cookie: str) -> None:
    """Until the signed-in page answers with the user's name."""
    status, body = server.wait_answer("/read/", {"Cookie": cookie, "User-Agent": USER_AGENT})
    if (status, body) != (200, "bench"):
        raise RuntimeError(f"{server.name}: the session is not signed in (page says {status} {body!r})")


# Load.

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(url: str, headers: dict[str, str], seconds: float, connections: int) -> dict[str, float]:
    """One wrk run: requests/s and p50/p99 latency in seconds. Fails on any non-2xx/3xx response or socket error."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        raise RuntimeError(f"{url}: {match[1]} responses were not 2xx or 3xx:\n{output}")
    if match := re.search(r"Socket errors: (.*)", output):
        raise RuntimeError(f"{url}: socket errors ({match[1]}):\n{output}")

    def latency(percent: int) -> float:
        number, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE).groups()
        return float(number) * _UNITS[unit]

    requests_per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    return {"rps": requests_per_second, "p50": latency(50), "p99": latency(99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "mariadb"], default="sqlite")
    parser.add_argument("--cache", choices=["locmem", "redis"], default="locmem")
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="server workers per engine")
    parser.add_argument("--server", choices=["gunicorn", "uvicorn"], default="gunicorn")
    parser.add_argument("--connections", type=int, help="wrk connections (default: twice the workers)")
    options = parser.parse_args()
    options.connections = options.connections or 2 * options.workers
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    try:
        import_module(options.server)
    except ImportError:
        sys.exit(f"{options.server} is not installed (dependency group bench)")
    # Ctrl-C and kill both end up in the finally below, which stops the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    engines = list(ENGINES)
    warm_up = min(WARM_UP_SECONDS, options.seconds)
    load_seconds = len(engines) * len(SCENARIOS) * (options.rounds * options.seconds + warm_up)
    print(
        f"database={options.db} cache={options.cache} seconds={options.seconds} rounds={options.rounds} "
        f"{options.server}: {options.workers} workers per engine (gunicorn: sync, 1 thread); wrk: 1 thread, "
        f"{options.connections} "
        f"connections; {os.cpu_count()} CPUs shared by wrk, the servers, database and cache"
    )
    print(f"expected duration: about {load_seconds + 5} s", flush=True)

    work_dir = tempfile.mkdtemp(prefix="qsessions-e2e-")
    # The sqlite database is a file every worker opens; the servers' databases are named as in requests.py.
    sqlite_file = str(Path(work_dir) / "bench.sqlite3") if options.db == "sqlite" else None
    configure(options.db, options.cache, engines[0], sqlite_file)
    import django

    django.setup()
    globals()["urlpatterns"] = _urls()
    from django.contrib.auth import get_user_model
    from django.core.cache import caches
    from django.db import connection

    db_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    servers: list[Server] = []
    try:
        caches["default"].clear()
        get_user_model().objects.create_user("bench", password="bench")
        cookies = {engine: f"sessionid={sign_in(engine)}" for engine in engines}
        rows = {engine: session_row(engine, cookies[engine].partition("=")[2]) for engine in engines}
        servers = [start_server(engine, options, db_name, work_dir) for engine in engines]
        for server in servers:
            wait_signed_in(server, cookies[server.name])

        print(f"{'scenario':38} {'engine':20} {'req/s':>8} {'ratio':>7} {'p50 ms':>7} {'p99 ms':>7}")
        for title, path in SCENARIOS.items():
            results: dict[str, list[dict[str, float]]] = {engine: [] for engine in engines}

            def one(server: Server, seconds: float, path: str = path) -> dict[str, float]:
                headers = {"User-Agent": USER_AGENT}
                if path != "/anonymous/":
                    headers["Cookie"] = cookies[server.name]
                try:
                    return run_wrk(server.url(path), headers, seconds, options.connections)
                except RuntimeError as error:
                    raise RuntimeError(f"{server.name}: {error}\n{server.log_tail()}") from None

            for server in servers:
                one(server, warm_up)
            for round_index in range(options.rounds):
                shift = round_index % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    results[server.name].append(one(server, options.seconds))
            medians = {
                engine: {key: statistics.median(run[key] for run in runs) for key in ("rps", "p50", "p99")}
                for engine, runs in results.items()
            }
            for engine in engines:
                median = medians[engine]
                ratio = median["rps"] / medians[f"django {engine.split()[1]}"]["rps"]
                print(
                    f"{title:38} {engine:20} {median['rps']:8.0f} {ratio:7.3f} {median['p50'] * 1e3:7.2f} "
                    f"{median['p99'] * 1e3:7.2f}",
                    flush=True,
                )
        for engine in engines:
            if session_row(engine, cookies[engine].partition("=")[2]) != rows[engine]:
                print(f"note: {engine} wrote its session during the load, which the hot path should not do")
    finally:
        for server in servers:
            server.stop()
        connection.close()
        connection.creation.destroy_test_db(db_name, verbosity=0)
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
elif ENV_ENGINE in os.environ:
    application = _application()
