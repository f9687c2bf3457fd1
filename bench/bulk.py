"""Bulk operations on sessions, for Django's engines, ours and the published django-qsessions 2.1.0, side by side.

    .venv/bin/python bench/bulk.py [--db sqlite|postgresql|mariadb] [--cache locmem|redis] [--rounds 3]
        [--expired 100000] [--live 10000] [--revoke 2000] [--no-published] [--only list|revoke|clearsessions]
        [--random-order] [--background 0]

Scenarios: listing a user's 50 sessions with their device and location; revoking a user's sessions with
``user.session_set.all().delete()``; ``clearsessions`` over expired and live rows, inserted in expiry order or, with
``--random-order``, in an order that is not (as a real table's rows are stored: sessions are created, extended and
saved at random times). ``--background N`` puts N more sessions in the table that revocation runs on, half of them
expired, of N/2 other users, to see how it grows with the table. Revocation is timed against a bare ``DELETE …
WHERE user_id = %s``, and on ``cached_db`` against that DELETE returning the keys, then one ``delete_many`` of their
cache entries per 500. For each it prints the median time per operation, its ratio to a reference engine, the SQL
statements and cache round-trips one operation costs, and for ``clearsessions`` its longest statement and the rows it
deletes per second.

The published package has our import name, so it runs in a child process, in a virtualenv made once in
``bench/.published/``: once per round, before our engines in odd rounds and after them in even ones. Within a round
the other engines take turns in an order that rotates. ``--no-published`` leaves it out (no network needed).

Each timed listing starts with an empty user-agent cache, so it pays for parsing every user agent; the parser's
regexes and the GeoIP reader are loaded once per process, as on a running site.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import _django

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = "2.1.0"
PUBLISHED_VENV = ROOT / "bench" / ".published"

ENGINES = {
    "django db": "django.contrib.sessions.backends.db",
    "django cached_db": "django.contrib.sessions.backends.cached_db",
    "qsessions db": "qsessions.backends.db",
    "qsessions cached_db": "qsessions.backends.cached_db",
    "published db": "qsessions.backends.db",
    "published cached_db": "qsessions.backends.cached_db",
    # References, not engines: the DELETE of a user's rows alone, without a cache, a signal or a key returned; and
    # that DELETE returning the keys, then one delete_many of their cache entries per 500.
    "bare DELETE": "qsessions.backends.db",
    "bare DELETE + cache": "qsessions.backends.cached_db",
}
LISTED = 50
LISTINGS_PER_ROUND = 10
SURVIVORS = 200
ANDROID_MODELS = ("K", "SM-S918B", "Pixel 8", "moto g(60)", "M2101K6G")

Sample = dict[str, float]


def _user_agent(index: int) -> str:
    """A distinct, realistic user agent for each index: Chrome, Firefox, Safari, Android and iOS in turn."""
    version = 100 + index
    kind = index % 5
    if kind == 0:
        return (
            f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{version}.0.{6000 + index}.{index % 200} Safari/537.36"
        )
    if kind == 1:
        return f"Mozilla/5.0 (X11; Linux x86_64; rv:{version}.0) Gecko/20100101 Firefox/{version}.0"
    if kind == 2:
        return (
            f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{index % 8}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            f"Version/{14 + index % 5}.{index % 7} Safari/605.1.15"
        )
    if kind == 3:
        return (
            f"Mozilla/5.0 (Linux; Android {10 + index % 5}; {ANDROID_MODELS[index % 5]}) AppleWebKit/537.36 "
            f"(KHTML, like Gecko) Chrome/{version}.0.0.0 Mobile Safari/537.36"
        )
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {15 + index % 3}_{index % 6} like Mac OS X) AppleWebKit/605.1.15 "
        f"(KHTML, like Gecko) Version/{15 + index % 3}.{index % 6} Mobile/15E{148 + index} Safari/604.1"
    )


def _ip(index: int) -> str:
    """A distinct address for each index (up to a few hundred), in turn in the GeoIP fixture's three networks."""
    number = index // 3
    return (
        f"81.2.69.{number % 254 + 1}",
        f"2.16.{number // 254}.{number % 254 + 1}",
        f"2001:db8::{number + 1:x}",
    )[index % 3]


def _users() -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    return model.objects.get(username="bench"), model.objects.get(username="other")


def _signed_in(user: Any, ip: str, user_agent: str) -> dict[str, Any]:
    """The payload of a signed-in session, with the client as both packages keep it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from qsessions import IP_SESSION_KEY, USER_AGENT_SESSION_KEY

    return {
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: user.get_session_auth_hash(),
        IP_SESSION_KEY: ip,
        USER_AGENT_SESSION_KEY: user_agent,
    }


def _create_sessions(store_class: Any, user: Any, count: int) -> list[str]:
    """Signed-in sessions made by the engine's store: rows written with one ``bulk_create`` on ``db``; on
    ``cached_db`` one ``create()`` each, so that each is in the cache as the engine itself puts it there."""
    cached = hasattr(store_class, "cache_key_prefix")
    keys, rows = [], []
    for index in range(count):
        ip, user_agent = _ip(index), _user_agent(index)
        store = store_class(user_agent=user_agent, ip=ip)
        data = _signed_in(user, ip, user_agent)
        # A store without a key starts empty: this loads nothing.
        store.update(data)
        if cached:
            store.create()
        else:
            rows.append(store.create_model_instance(data))
        keys.append(store.session_key)
    store_class.get_model_class().objects.bulk_create(rows, batch_size=500)
    return keys


def _add_background(count: int) -> None:
    """``count`` sessions of ``count / 2`` users, every other one expired, in an order that is neither their keys' nor
    their expiry dates'."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from qsessions.models import Session

    model = get_user_model()
    users = model.objects.bulk_create(
        [model(username=f"background{index}", password="!") for index in range(max(1, count // 2))], batch_size=2000
    )
    now = timezone.now()
    for start in range(0, count, 20_000):
        Session.objects.bulk_create(
            [
                Session(
                    session_key=secrets.token_hex(16),
                    session_data="x" * 200,
                    expire_date=now + timedelta(seconds=random.randrange(-(10**6), 10**6)),
                    user_id=users[index // 2].pk,
                    user_agent=_user_agent(index % 500),
                    ip=_ip(index % 300),
                )
                for index in range(start, min(count, start + 20_000))
            ],
            batch_size=2000,
        )


def _empty(store_class: Any, users: tuple[Any, ...] = ()) -> None:
    from django.core.cache import caches
    from django.core.management.color import no_style
    from django.db import connection

    # TRUNCATE where there is one: rows merely deleted would leave dead index entries for the next scenario to wade
    # through (the user's sessions are listed by an index on user_id) until the database cleans them up.
    model = store_class.get_model_class()
    if users:
        # Only these users' sessions: the background stays.
        model.objects.filter(user__in=users)._raw_delete(model.objects.db)
    else:
        connection.ops.execute_sql_flush(
            connection.ops.sql_flush(no_style(), [model._meta.db_table], reset_sequences=True)
        )
    caches["default"].clear()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


@functools.cache
def _user_agent_resolver() -> Any:
    """``ua-parser``'s fastest resolver, without its cache: built once, as the default parser is."""
    import ua_parser

    return ua_parser.BestAvailableResolver(ua_parser.load_lazy_builtins())


def _empty_user_agent_cache() -> None:
    # qsessions.devices parses through ua-parser's global parser and keeps no cache of its own: a new global
    # parser around the same resolver forgets every user agent it has parsed.
    import ua_parser

    ua_parser.parser = ua_parser.Parser(ua_parser.CachingResolver(_user_agent_resolver(), ua_parser.Cache(2000)))


def scenario_list(store_class: Any, options: argparse.Namespace, counter: _django.Counter) -> list[Sample]:
    from django.utils import timezone

    user, _ = _users()
    _create_sessions(store_class, user, LISTED)
    samples = []
    # The first listing only warms up: it loads the parser's regexes and opens the GeoIP database.
    for listing in range(LISTINGS_PER_ROUND + 1):
        _empty_user_agent_cache()
        now = timezone.now()
        gc.collect()
        counter.sql = counter.cache = 0
        started = time.perf_counter()
        rows = list(user.session_set.filter(expire_date__gt=now).order_by("-pk"))
        listed = time.perf_counter()
        described = [(row.device, row.location) for row in rows]
        finished = time.perf_counter()
        if listing:
            samples.append(
                {
                    "ms": (finished - started) * 1000,
                    "reads_ms": (finished - listed) * 1000,
                    "sql": counter.sql,
                    "cache": counter.cache,
                }
            )
    _check(len(described) == LISTED, f"listed {len(described)} sessions")
    _check(all(device and location for device, location in described), f"undescribed sessions: {described}")
    _check(len({row.user_agent for row in rows}) == LISTED, "the sessions' user agents are not all distinct")
    _empty(store_class)
    return samples


def scenario_revoke(store_class: Any, options: argparse.Namespace, counter: _django.Counter) -> list[Sample]:
    from django.core.cache import caches

    user, other = _users()
    revoked = _create_sessions(store_class, user, options.revoke)
    survivors = _create_sessions(store_class, other, SURVIVORS)
    model = store_class.get_model_class()
    if options.engine.startswith("bare DELETE"):
        from django.db import connection

        def delete() -> None:
            cache = options.engine.endswith("cache")
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {model._meta.db_table} WHERE user_id = %s" + (" RETURNING session_key" * cache),
                    [user.pk],
                )
                keys = [store_class.cache_key_prefix + key for (key,) in cursor.fetchall()] if cache else []
            for start in range(0, len(keys), 500):
                caches["default"].delete_many(keys[start : start + 500])

        sample = counter.timed(delete)
    else:
        sample = counter.timed(lambda: user.session_set.all().delete())
    _check(not model.objects.filter(user=user).exists(), "a revoked session's row is left")
    _check(model.objects.filter(user=other).count() == SURVIVORS, "another user's session's row is gone")
    prefix = getattr(store_class, "cache_key_prefix", None)
    if prefix is not None:
        cache = caches["default"]
        found = cache.get_many([prefix + key for key in revoked])
        _check(not found, "a revoked session can still be served from the cache")
        left = cache.get_many([prefix + key for key in survivors])
        _check(len(left) == SURVIVORS, "another user's session is gone from the cache")
    _empty(store_class, (user, other) if options.background else ())
    return [sample]


def scenario_clearsessions(store_class: Any, options: argparse.Namespace, counter: _django.Counter) -> list[Sample]:
    from django.core.cache import caches
    from django.core.management import call_command
    from django.utils import timezone

    model = store_class.get_model_class()
    user, _ = _users()
    now = timezone.now()
    data = _signed_in(user, _ip(0), _user_agent(0))
    session_data = store_class().encode(data)
    client = {"user": user, "ip": _ip(0), "user_agent": _user_agent(0)} if model._meta.app_label == "qsessions" else {}
    rows = [
        model(
            session_key=secrets.token_hex(16),
            session_data=session_data,
            # Spread out, as real sessions' are: the expired ones over the past days, the live ones from an hour on.
            expire_date=now + timedelta(seconds=10 * (index - options.expired) + (index >= options.expired) * 3600),
            **client,
        )
        for index in range(options.expired + options.live)
    ]
    if options.random_order:
        random.Random(0).shuffle(rows)
    model.objects.bulk_create(rows, batch_size=2000)
    prefix = getattr(store_class, "cache_key_prefix", None)
    if prefix is not None:
        # What the entries hold does not matter to clearsessions, only that the live sessions are cached.
        live = {prefix + row.pk: data for row in rows[options.expired :]}
        caches["default"].set_many(live, timeout=14 * 24 * 3600)
    sample = {**counter.timed(lambda: call_command("clearsessions")), "deleted": options.expired}
    _check(model.objects.count() == options.live, "clearsessions did not leave exactly the live sessions")
    _check(not model.objects.filter(expire_date__lt=now).exists(), "an expired session is left")
    _empty(store_class)
    return [sample]


# Title: (scenario, engines, the engine each one's ratio is to).
SCENARIOS: dict[str, tuple[Callable[..., list[Sample]], list[str], str]] = {
    f"list a user's {LISTED} sessions with device and location": (
        scenario_list,
        ["qsessions db", "qsessions cached_db"],
        "qsessions db",
    ),
    "revoke a user's sessions: user.session_set.all().delete()": (
        scenario_revoke,
        [
            "bare DELETE",
            "qsessions db",
            "published db",
            "bare DELETE + cache",
            "qsessions cached_db",
            "published cached_db",
        ],
        "bare DELETE{cache}",
    ),
    "clearsessions over expired and live rows": (
        scenario_clearsessions,
        ["django db", "qsessions db", "published db", "django cached_db", "qsessions cached_db", "published cached_db"],
        "django db",
    ),
}

Results = dict[str, dict[str, list[Sample]]]


def run_round(round_index: int, published: bool, options: argparse.Namespace, counter: _django.Counter) -> Results:
    """One round of every scenario, on the published engines or on the others."""
    from django.test import override_settings

    results: Results = {}
    for title, (scenario, engines, _) in SCENARIOS.items():
        mine = [engine for engine in engines if engine.startswith("published") == published]
        if not mine or (options.only and scenario.__name__.removeprefix("scenario_") not in options.only):
            continue
        order = mine[round_index % len(mine) :] + mine[: round_index % len(mine)]
        for engine in order:
            options.engine = engine
            with override_settings(SESSION_ENGINE=ENGINES[engine]):
                store_class = import_module(ENGINES[engine]).SessionStore
                results.setdefault(title, {})[engine] = scenario(store_class, options, counter)
    return results


def published_python() -> Path:
    """The interpreter of a virtualenv with the published package and this Django, made on first use."""
    import django

    python = PUBLISHED_VENV / "bin" / "python"
    requirements = [f"django-qsessions=={PUBLISHED}", f"django=={django.__version__}"]
    requirements += ["psycopg[binary]", "mysqlclient", "redis"]
    stamp = PUBLISHED_VENV / "installed.txt"
    if not stamp.is_file() or stamp.read_text() != " ".join(requirements):
        print(f"Installing django-qsessions {PUBLISHED} in {PUBLISHED_VENV}…", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PUBLISHED_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True)
        stamp.write_text(" ".join(requirements))
    return python


def run_published_round(round_index: int, options: argparse.Namespace) -> Results:
    command = [str(published_python()), __file__, "--engines", "published", "--round", str(round_index)]
    for name in ("db", "cache", "expired", "live", "revoke", "background"):
        command += [f"--{name}", str(getattr(options, name))]
    if options.random_order:
        command.append("--random-order")
    for only in options.only:
        command += ["--only", only]
    return json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout)


def report(results: Results) -> None:
    for title, (_, engines, reference) in SCENARIOS.items():
        if title not in results:
            continue
        first = next(iter(results[title].values()))[0]
        extra, deleting = "reads_ms" in first, "deleted" in first
        print(f"\n{title}")
        header = f"  {'engine':20} {'median ms':>10} {'ratio':>7} {'SQL':>5} {'cache':>6}"
        print(header + (" device+location ms" if extra else "") + (" longest ms  rows/s" if deleting else ""))
        for engine in engines:
            samples = results[title].get(engine)
            if not samples:
                continue
            median = statistics.median(sample["ms"] for sample in samples)
            kind = engine.split()[-1]
            baseline = results[title].get(reference.format(kind=kind, cache=" + cache" * (kind == "cached_db")))
            ratio = f"{median / statistics.median(sample['ms'] for sample in baseline):7.3f}" if baseline else "      -"
            sql = statistics.median(sample["sql"] for sample in samples)
            cache_ops = statistics.median(sample["cache"] for sample in samples)
            line = f"  {engine:20} {median:10.2f} {ratio} {sql:5g} {cache_ops:6g}"
            if extra:
                line += f" {statistics.median(sample['reads_ms'] for sample in samples):18.2f}"
            if deleting:
                longest = statistics.median(sample["longest_ms"] for sample in samples)
                line += f" {longest:10.2f} {samples[0]['deleted'] / median * 1000:7.0f}"
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "mariadb"], default="sqlite")
    parser.add_argument("--cache", choices=["locmem", "redis"], default="locmem")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--expired", type=int, default=100_000, help="expired rows clearsessions deletes")
    parser.add_argument("--live", type=int, default=10_000, help="live rows clearsessions keeps")
    parser.add_argument("--revoke", type=int, default=2000, help="sessions of the user who is signed out everywhere")
    parser.add_argument("--no-published", action="store_true", help=f"leave out django-qsessions {PUBLISHED}")
    parser.add_argument("--random-order", action="store_true", help="store clearsessions' rows out of expiry order")
    parser.add_argument("--background", type=int, default=0, help="other sessions in the table revocation runs on")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=["list", "revoke", "clearsessions"],
        help="run only this scenario (repeatable)",
    )
    # The child process that runs the published package: one round, results as JSON on stdout.
    parser.add_argument("--engines", choices=["ours", "published"], default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.background and options.only != ["revoke"]:
        parser.error("--background is for --only revoke: the other scenarios empty the table")
    published = options.engines == "published"

    with tempfile.TemporaryDirectory() as geoip_path:
        if not published:
            sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
            from tests.geoip_fixtures import write_city

            write_city(Path(geoip_path))
        # A name of this process's own: two runs on one server never share a database.
        name = f"qsessions_bench{'_published' if published else ''}_{os.getpid()}"
        _django.configure(options.db, options.cache, None if options.db == "sqlite" else name, GEOIP_PATH=geoip_path)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.cache import caches
        from django.db import connection

        if published:
            from importlib.metadata import version

            _check(version("django-qsessions") == PUBLISHED, f"not django-qsessions {PUBLISHED}")
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        caches["default"].clear()
        for username in ("bench", "other"):
            get_user_model().objects.create_user(username, password=username)
        if options.background:
            _add_background(options.background)
        counter = _django.Counter()
        try:
            if published:
                print(json.dumps(run_round(options.round, True, options, counter)))
                return
            print(
                f"database={options.db} cache={options.cache} rounds={options.rounds} expired={options.expired} "
                f"live={options.live} revoke={options.revoke} background={options.background} "
                f"Django {django.__version__}"
            )
            results: Results = {}
            for round_index in range(options.rounds):
                turns = [False] if options.no_published else [False, True] if round_index % 2 == 0 else [True, False]
                for published_turn in turns:
                    if published_turn:
                        found = run_published_round(round_index, options)
                    else:
                        found = run_round(round_index, False, options, counter)
                    for title, by_engine in found.items():
                        for engine, samples in by_engine.items():
                            results.setdefault(title, {}).setdefault(engine, []).extend(samples)
            report(results)
        finally:
            connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
