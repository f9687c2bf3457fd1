"""A bounded load test of the demo site under real servers, ending with a check that nothing acknowledged was lost.

    .venv/bin/python bench/load.py [--db postgresql|sqlite] [--cache redis|locmem] [--seconds 10] [--clients 24]
        [--server gunicorn --server uvicorn] [--partition]

Needs the ``bench`` and ``servers`` dependency groups; PostgreSQL and Redis on 127.0.0.1 by default (``--db sqlite
--cache locmem`` needs nothing). It serves ``example/`` (``QSESSIONS_DEMO_LOAD=1``: the JSON views of
``demo_site/load.py``) from a database of its own, created fresh and dropped at the end (``qsessions_load`` on
PostgreSQL, a temporary file on SQLite), with a Redis key prefix of its own, whose keys it deletes at the end. In
turn, on free loopback ports:

- gunicorn (WSGI; 2 workers x 4 threads) serving the sync views, ``load/sync/``;
- uvicorn (ASGI; 2 workers) serving the async views, ``load/async/``: the async session API, ``alogin``,
  ``alogout``, ``request.auser()``, and ``qsessions.revoke`` through ``sync_to_async`` (it is sync only).

Clients (asyncio, one ``httpx`` cookie jar each, four per user so that they can sign each other out) sign in, then
read, write a per-session counter, ask who they are, read from another device while writing, revoke another
client's session of their user, or sign out, for ``--seconds``. Each session's requests are sent one after the
other (but for that concurrent read), so every answer has one right value, checked as it arrives: a write answers
the last acknowledged counter plus one, a read the last acknowledged counter. A client whose session was revoked
gets a 401 (or a 400 ``SessionInterrupted`` for a write that raced the revocation), counted apart, then signs in
again. Any other status, a 5xx or a connection error is an error.

After the servers stop, every session is checked in this process through Django's test client, on the same
database and cache: a live session's row holds its last acknowledged counter and a request with its cookie reads
it (through the cache on ``cached_db``); a revoked or signed-out session has no row and its cookie is anonymous.
It exits non-zero on any error or failed check. A 3-second run takes about 12 s.

``--partition`` (Redis only): a second server of the same kind, one worker, reaches Redis through a relay that is cut
before the clients start, as a network partition of that one app server would: its sessions are read from rows, its
endings owed in the database. Every revocation and sign-out goes through it, every other request through the main
server, which keeps its cache. A request sent with a session's cookie after its ending was acknowledged, and answered
as signed in, is a revoked session accepted: the run reports them, and fails on any.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from _servers import Relay, Server, free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
sys.path[:0] = [str(ROOT / "src"), str(EXAMPLE)]


class ServerKind(NamedTuple):
    prefix: str  # of the views it serves
    description: str
    command: list[str]  # after python -m
    env: dict[str, str]


SERVERS = {
    "gunicorn": ServerKind(
        "load/sync/",
        "WSGI, gunicorn, {workers} worker(s) x {threads} threads, sync views, persistent database connections",
        ["gunicorn", "--chdir", str(EXAMPLE), "--worker-class", "gthread", "--workers", "{workers}",
         "--threads", "{threads}", "--bind", "127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "5",
         "demo_site.wsgi:application"],
        {"QSESSIONS_DEMO_CONN_MAX_AGE": "60"},
    ),
    "uvicorn": ServerKind(
        "load/async/",
        "ASGI, uvicorn, {workers} worker(s), async views",
        ["uvicorn", "--app-dir", str(EXAMPLE), "--workers", "{workers}", "--host", "127.0.0.1", "--port", "{port}",
         "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "5",
         "demo_site.asgi:application"],
        {},
    ),
}  # fmt: skip
WORKERS, THREADS = 2, 4
CLIENTS_PER_USER = 4
PASSWORD = "load"
COUNTER = "load_counter"  # demo_site.load.COUNTER; not imported, so that Django is set up first
#: How often each operation comes up; an operation that cannot run (nobody to revoke) is a read instead.
OPERATIONS = {"read": 40, "write": 35, "whoami": 10, "overlap": 6, "revoke": 6, "signout": 3}
MAX_OPERATIONS_PER_CLIENT = 100_000
MAX_ERRORS = 50  # the clients stop early past this many, rather than hammer a broken server
REQUEST_TIMEOUT = 10
# A revoked or signed-out session's state; "unknown" is a session an error left in doubt, which no check covers.
ENDED = ("revoked", "signed out")


@dataclass(eq=False)
class Session:
    """What a client knows of one of its sessions: the last counter the server acknowledged, and how it ended."""

    user: str
    user_agent: str
    key: str
    public_id: str
    counter: int = 0
    #: live; revoking (another client's revocation is on its way); signing out; revoked; signed out; unknown.
    state: str = "live"
    #: The ``time.monotonic()`` at which its revocation or sign-out was acknowledged.
    ended_at: float | None = None

    def __str__(self) -> str:
        return f"session {self.public_id} of {self.user}"


@dataclass
class Run:
    """One server's load: the counts, the errors, the inconsistencies seen live, and every session made."""

    server: str
    prefix: str
    base_url: str
    deadline: float
    #: Where revocations and sign-outs go: the partitioned server, if any.
    ending_url: str = ""
    served: int = 0
    accepted_after_ending: int = 0
    ending_seconds: list[float] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    revoked_answers: int = 0
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)

    def live_sessions(self, user: str, but: Session) -> list[Session]:
        return [
            session
            for session in self.sessions
            if session.user == user and session.state == "live" and session is not but
        ]

    def going_on(self) -> bool:
        return time.monotonic() < self.deadline and len(self.errors) < MAX_ERRORS


class Client:
    """One browser: a cookie jar, a user agent, and the session it is signed in with, if any."""

    def __init__(self, run: Run, index: int, user: str) -> None:
        self.run = run
        self.user = user
        self.user_agent = f"qsessions-load/{index}"
        self.http = httpx.AsyncClient(
            base_url=run.base_url, headers={"User-Agent": self.user_agent}, timeout=REQUEST_TIMEOUT
        )
        self.session: Session | None = None
        #: The session whose cookie the jar holds, if any: the last one signed in with.
        self.last: Session | None = None
        self.random = random.Random(index)

    async def go(self) -> None:
        async with self.http:
            for _ in range(MAX_OPERATIONS_PER_CLIENT):
                if not self.run.going_on():
                    return
                if self.session is None:
                    await self.sign_in()
                    continue
                operation = self.random.choices(list(OPERATIONS), weights=list(OPERATIONS.values()))[0]
                await getattr(self, operation)(self.session)

    async def request(self, session: Session | None, name: str, method: str, data: Any = None,
                      headers: Any = None) -> Any:  # fmt: skip
        """The JSON of a 200; ``None`` otherwise, once the answer is counted as an error or as a revoked session's."""
        ending = name in ("revoke", "signout")
        url = (self.run.ending_url if ending else "") + self.run.prefix + name + "/"
        sent = time.monotonic()
        try:
            response = await self.http.request(method, url, data=data, headers=headers)
        except httpx.HTTPError as error:
            return self.error(session, f"{name}: {error!r}")
        self.run.served += 1
        if ending:
            self.run.ending_seconds.append(time.monotonic() - sent)
        if response.status_code == 200:
            self.run.operations[name] += 1
            if session is not None and session.ended_at is not None and sent > session.ended_at and name != "signin":
                self.run.accepted_after_ending += 1
                self.fail(session, f"{name} answered signed in {sent - session.ended_at:.3f} s after its ending")
            return response.json()
        # Django answers a save that finds its row gone with SessionInterrupted, a 400 with a body that says nothing: a
        # write, or a sign-in with the cookie of a session of the same user (login() keeps such a session's key).
        interrupted = response.status_code == 400 and name in ("write", "signin")
        if (
            session is not None
            and session.state in ("revoking", "revoked")
            and (response.status_code == 401 or interrupted)
        ):
            self.run.revoked_answers += 1
            self.forget(session)
            return None
        return self.error(session, f"{name}: {response.status_code} {response.text[:200]!r}")

    def error(self, session: Session | None, message: str) -> None:
        self.run.errors.append(f"{session or self.user}: {message}")
        if session is not None and session.state not in ENDED:
            session.state = "unknown"
        self.forget(session)

    def forget(self, session: Session | None) -> None:
        """Sign in afresh on the next turn: this session is over, or in doubt."""
        if self.session is session:
            self.session = None

    def fail(self, session: Session, message: str) -> None:
        self.run.failures.append(f"{session}: {message}")

    async def sign_in(self) -> None:
        # With the last session's cookie, if the jar still holds it: before its revocation is acknowledged, that
        # session may still be served, and the sign-in interrupted.
        last = self.last if self.http.cookies.get("sessionid") else None
        answer = await self.request(last, "signin", "POST", {"username": self.user, "password": PASSWORD})
        key = self.http.cookies.get("sessionid")
        if answer is not None and key is None:
            self.error(None, "signin: answered 200 without a session cookie")
        elif answer is not None:
            self.session = self.last = Session(self.user, self.user_agent, key, answer["id"])
            self.run.sessions.append(self.session)

    async def read(self, session: Session, user_agent: str | None = None, expected: tuple[int, ...] = ()) -> None:
        headers = None if user_agent is None else {"User-Agent": user_agent}
        answer = await self.request(session, "read", "GET", headers=headers)
        expected = expected or (session.counter,)
        if answer is not None and answer["counter"] not in expected:
            self.fail(session, f"read {answer['counter']}, last acknowledged write {session.counter}")

    async def write(self, session: Session) -> None:
        answer = await self.request(session, "write", "POST")
        if answer is not None:
            if answer["counter"] != session.counter + 1:
                self.fail(session, f"write answered {answer['counter']}, after {session.counter} was acknowledged")
            session.counter = answer["counter"]

    async def whoami(self, session: Session) -> None:
        answer = await self.request(session, "whoami", "GET")
        if answer is not None and (answer["user"], answer["id"]) != (session.user, session.public_id):
            self.fail(session, f"whoami answered {answer}")

    async def overlap(self, session: Session) -> None:
        """A write, and meanwhile a read from another device (a new user agent, so the read records it)."""
        counter = session.counter
        await asyncio.gather(
            self.write(session), self.read(session, f"{self.user_agent} (other)", (counter, counter + 1))
        )

    async def revoke(self, session: Session) -> None:
        targets = self.run.live_sessions(session.user, but=session)
        if not targets:
            return await self.read(session)
        target = self.random.choice(targets)
        # Marked first: its client may see the revocation before this one sees the answer.
        target.state = "revoking"
        answer = await self.request(session, "revoke", "POST", {"id": target.public_id})
        if answer is not None:
            target.state, target.ended_at = "revoked", time.monotonic()
        elif target.state == "revoking":
            # This client's own session was revoked meanwhile, so its request revoked nobody; or an error left it
            # in doubt.
            target.state = "unknown" if session.state == "unknown" else "live"
        return None

    async def signout(self, session: Session) -> None:
        if session.state != "live":
            return await self.read(session)
        session.state = "signing out"
        if await self.request(session, "signout", "POST") is not None:
            session.state, session.ended_at = "signed out", time.monotonic()
            self.forget(session)
        return None


async def load(run: Run, clients: int) -> None:
    users = [f"load{index % (clients // CLIENTS_PER_USER)}" for index in range(clients)]
    tasks = [Client(run, index, user).go() for index, user in enumerate(users)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=run.deadline - time.monotonic() + 2 * REQUEST_TIMEOUT)
    except asyncio.TimeoutError:
        run.errors.append("the clients did not stop in time")


def check(run: Run) -> list[str]:
    """What the database and the cache hold for every session of the run, against what the clients were told."""
    from django.test import Client as TestClient

    from qsessions.models import Session as Row

    keys = [session.key for session in run.sessions]
    rows = {row.session_key: row for row in Row.objects.filter(session_key__in=keys)}
    failures = []
    for session in run.sessions:
        row = rows.get(session.key)
        # The browser that held the cookie, so that the check itself changes nothing.
        browser = TestClient(HTTP_HOST="127.0.0.1", HTTP_USER_AGENT=session.user_agent)
        browser.cookies["sessionid"] = session.key
        if session.state == "live":
            if row is None:
                failures.append(f"{session}: live, but its row is gone")
                continue
            stored = row.get_decoded().get(COUNTER, 0)
            if stored != session.counter:
                failures.append(f"{session}: its row holds {stored}, the last acknowledged write {session.counter}")
            response = browser.get(f"/{run.prefix}read/")
            if response.status_code != 200 or response.json()["counter"] != session.counter:
                failures.append(f"{session}: reads {response.status_code} {response.content[:100]!r}, "
                                f"the last acknowledged write {session.counter}")  # fmt: skip
        elif session.state in ENDED:
            if row is not None:
                failures.append(f"{session}: {session.state}, but its row is still there")
            response = browser.get(f"/{run.prefix}whoami/")
            if response.status_code != 401:
                failures.append(f"{session}: {session.state}, but its cookie is still signed in ({response.content!r})")
    return failures


def serve(name: str, run_dir: Path, workers: int, label: str = "", env: dict[str, str] | None = None) -> Server:
    kind = SERVERS[name]
    port = free_port()
    placeholders = {"port": port, "workers": workers, "threads": THREADS * WORKERS // workers}
    command = [sys.executable, "-m", *(part.format(**placeholders) for part in kind.command)]
    server = Server(name, port, command, {**os.environ, **kind.env, **(env or {})}, run_dir / f"{name}{label}.log")
    print(f"{name}{label}: {kind.description.format(**placeholders)}, on port {port}", flush=True)
    status, body = server.wait_answer(f"/{kind.prefix}whoami/")
    if status != 401:
        raise RuntimeError(f"{name}: an anonymous whoami answered {status} {body[:200]!r}")
    return server


def report(run: Run, seconds: float, failures: list[str], log: str) -> bool:
    ended = Counter(session.state for session in run.sessions)
    print(
        f"{run.server:9} {run.served:7} requests in {seconds:4.1f} s = {run.served / seconds:6.0f} req/s; "
        f"errors {len(run.errors)}; answers to revoked sessions {run.revoked_answers} (expected); "
        f"ok by kind {dict(run.operations)}; sessions {dict(ended)}; "
        f"check {'ok' if not failures else f'FAILED ({len(failures)})'}"
    )
    if run.ending_url:
        ending = sorted(run.ending_seconds) or [0.0]
        print(
            f"    partition: {len(run.ending_seconds)} revocations and sign-outs through the server without its "
            f"cache, {ending[len(ending) // 2]:.2f} s median, {ending[-1]:.2f} s longest; revoked sessions accepted "
            f"after their ending was acknowledged: {run.accepted_after_ending} (must be 0)"
        )
    for message in [*run.errors[:10], *failures[:20]]:
        print(f"    {message}")
    if run.errors:
        print(f"    server log, last lines:\n{log}")
    return not run.errors and not failures


def delete_cache_keys(prefix: str) -> None:
    """Delete this run's keys (and no one else's) from Redis, a batch at a time."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    for _ in range(1000):
        keys = list(islice(client.scan_iter(match=f"{prefix}:*", count=1000), 1000))
        if not keys:
            return
        client.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--cache", choices=["redis", "locmem"], default="redis")
    parser.add_argument("--seconds", type=float, default=10, help="how long the clients run, per server")
    parser.add_argument("--clients", type=int, default=24, help=f"clients, {CLIENTS_PER_USER} per user")
    parser.add_argument("--server", choices=list(SERVERS), action="append", help="default: both, in turn")
    parser.add_argument(
        "--partition", action="store_true", help="end sessions through a second server cut off from the cache"
    )
    options = parser.parse_args()
    if options.clients < CLIENTS_PER_USER:
        parser.error(f"--clients must be at least {CLIENTS_PER_USER}")
    if options.partition and options.cache != "redis":
        parser.error("--partition needs --cache redis")
    # Ctrl-C and kill both end up in the finally below, which stops the servers and drops what the run made.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    run_dir = Path(tempfile.mkdtemp(prefix="qsessions-load-"))
    cache_prefix = f"qsessions-load-{os.getpid()}-{secrets.token_hex(4)}"
    db_name = "qsessions_load" if options.db == "postgresql" else str(run_dir / "load.sqlite3")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="demo_site.settings",
        QSESSIONS_DEMO_LOAD="1",
        QSESSIONS_DEMO_DB=options.db,
        QSESSIONS_DEMO_DB_NAME=db_name,
        QSESSIONS_DEMO_CACHE=options.cache,
        QSESSIONS_DEMO_CACHE_PREFIX=cache_prefix,
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    print(
        f"database={options.db} ({db_name}) cache={options.cache} clients={options.clients} "
        f"seconds={options.seconds:g} per server; {os.cpu_count()} CPUs shared by the clients, servers, database "
        "and cache",
        flush=True,
    )
    connection.settings_dict["TEST"]["NAME"] = db_name
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server = partitioned = None
    relay = Relay(("127.0.0.1", 6379)) if options.partition else None
    ok = True
    try:
        for index in range(options.clients // CLIENTS_PER_USER):
            get_user_model().objects.create_user(f"load{index}", password=PASSWORD)
        connection.close()
        for name in options.server or list(SERVERS):
            # A local-memory cache is one per process: with two, each would serve its own stale copies.
            server = serve(name, run_dir, WORKERS if options.cache == "redis" else 1)
            run = Run(name, SERVERS[name].prefix, server.url("/"), time.monotonic() + options.seconds)
            if relay is not None:
                relay.heal()
                redis_url = f"redis://127.0.0.1:{relay.port}/12"
                partitioned = serve(name, run_dir, 1, " (partitioned)", {"QSESSIONS_DEMO_REDIS_URL": redis_url})
                relay.cut()
                run.ending_url = partitioned.url("/")
            started = time.monotonic()
            asyncio.run(load(run, options.clients))
            seconds = time.monotonic() - started
            server.stop()
            if partitioned is not None:
                partitioned.stop()
                partitioned = None
            failures = run.failures + check(run)
            ok = report(run, seconds, failures, server.log_tail()) and ok
            server = None
    finally:
        for running in (server, partitioned):
            if running is not None:
                running.stop()
        if relay is not None:
            relay.cut()
        connection.close()
        connection.creation.destroy_test_db(db_name, verbosity=0)
        if options.cache == "redis":
            delete_cache_keys(cache_prefix)
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
