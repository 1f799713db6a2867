"""Scale: the read benchmark with 1,000 and with 1,000,000 sessions (10 revisions each) in PostgreSQL,
the ratio of p50 latencies, and the staff sessions page with filters at 1,000,000 sessions.

Rows are written with SQL generate_series (bench/data.py). The 1,000,000-session database
(`sessionctx_bench_1m`, about 5 GB with its 10,000,000 revisions) takes several minutes to build, so
it is kept and reused by later runs while it holds the expected rows; --fresh builds it again,
--drop removes it at the end.

    .venv/bin/python bench/scale.py [--large 1000000] [--fresh] [--drop] [--pages-only]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.read_path import CONTEXT, PROMPT  # noqa: E402

SMALL_DB = "sessionctx_bench_1k"
HOT_SESSIONS = 1000
# Long enough for the read cache to reach its steady state on a set that fits it (every one of 1,000
# sessions read, so cached, before the timed part); it makes no difference to a set of 1,000,000.
WARMUP = 5.0
LARGE_DB = "sessionctx_bench_1m"
STAFF_FILTERS = [
    ("no filter", ""),
    ("status=handoff_requested", "?status=handoff_requested"),
    ("agent=agent-7", "?agent=agent-7"),
    ("mode=planning&status=active", "?mode=planning&status=active"),
    ("search q=user-4242", "?q=user-4242"),
    ("search q=bench-123456", "?q=bench-123456"),
    ("search q=downtime postgresql", "?q=downtime+postgresql"),
    ("search q=b7 (ids only)", "?q=b7"),
    ("status=closed&q=user-4242", "?status=closed&q=user-4242"),
]


def database_rows(db_name: str) -> int | None:
    import psycopg

    try:
        with psycopg.connect(f"{common.PG_SERVER}/{db_name}") as conn:
            return conn.execute("SELECT count(*) FROM contexts_sessioncontext").fetchone()[0]
    except psycopg.Error:
        return None


def prepare(db_name: str, count: int, *, fresh: bool) -> tuple[str, str, bool]:
    """(API key, staff session cookie, reused) for a database holding `count` bench sessions."""
    reuse = not fresh and database_rows(db_name) == count
    if reuse:
        print(f"reusing {db_name} with {count:,} sessions (--fresh builds it again)", flush=True)
    common.setup_django(db_name, recreate=not reuse)
    from django.db import connection

    from bench import data

    if not reuse:
        print(f"generating {count:,} sessions with 10 revisions each in {db_name} ...", flush=True)
        seconds = data.generate(0, count, revisions=10)
        print(f"  done in {seconds:.0f} s; sizes {data.table_sizes()}", flush=True)
    from bench.read_path import create_key

    key = create_key("read")
    cookie = staff_cookie()
    connection.close()
    return key, cookie, reuse


def staff_cookie() -> str:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    User = get_user_model()
    user = User.objects.filter(username="bench-staff").first() or User.objects.create_superuser(
        "bench-staff", "bench@example.com", "bench-password-not-secret")
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def staff_pages(server: common.Gunicorn, cookie: str, rounds: int = 15) -> dict[str, tuple[float, float, int]]:
    """p50 and max latency (ms) of the sessions page per filter, one request at a time, and the status."""
    out = {}
    for label, query in STAFF_FILTERS:
        timings, status = [], 0
        for _ in range(rounds + 2):
            began = time.perf_counter()
            status, _, body = common.http("GET", f"{server.base}/{query}", headers={"Cookie": cookie}, timeout=60)
            timings.append((time.perf_counter() - began) * 1000)
        timings = timings[2:]  # the first two warm the worker
        out[label] = (statistics.median(timings), max(timings), status)
    return out


def measure(db_name: str, count: int, *, fresh: bool, connections: int, duration: float, pages_only: bool = False):
    key, cookie, _ = prepare(db_name, count, fresh=fresh)
    env = common.bench_env(db_name)
    auth = {"Authorization": f"Bearer {key}"}
    with common.Gunicorn(env) as server:
        if pages_only:
            return {}, staff_pages(server, cookie)
        hot = min(count, HOT_SESSIONS)
        results = {
            "bare": common.load("GET /bench/bare", server.base + "/bench/bare", connections=connections,
                                duration=duration),
            # Every read of a random session out of all of them: at 1,000,000 nearly each one misses the
            # read cache (a database read and a fill), at 1,000 nearly each one hits it.
            "context": common.load(f"GET .../context ({count:,})", server.base + "/", headers=auth,
                                   lua=common.random_path_lua(CONTEXT, count), connections=connections,
                                   duration=duration, warmup=WARMUP),
            "prompt": common.load(f"GET .../context/prompt ({count:,})", server.base + "/", headers=auth,
                                  lua=common.random_path_lua(PROMPT, count), connections=connections,
                                  duration=duration, warmup=WARMUP),
            # The conversations going on at a time are a small part of all that are stored.
            "context hot": common.load(f"GET .../context ({hot:,} active of {count:,})", server.base + "/",
                                       headers=auth, lua=common.random_path_lua(CONTEXT, hot, offset=count - hot),
                                       connections=connections, duration=duration, warmup=WARMUP),
        }
        pages = staff_pages(server, cookie)
    # The database path alone (no read cache): what the size of the tables does to a lookup.
    with common.Gunicorn({**env, "SESSIONCTX_READ_CACHE": "false"}) as server:
        results["context db"] = common.load(f"GET .../context ({count:,}, no read cache)", server.base + "/",
                                            headers=auth, lua=common.random_path_lua(CONTEXT, count),
                                            connections=connections, duration=duration)
    return results, pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=common.CONNECTIONS)
    parser.add_argument("--duration", type=float, default=common.DURATION)
    parser.add_argument("--fresh", action="store_true", help=f"build {LARGE_DB} again even if it exists")
    parser.add_argument("--drop", action="store_true", help=f"drop {LARGE_DB} at the end")
    parser.add_argument("--pages-only", action="store_true",
                        help="only the staff page timings (no wrk load), e.g. after an index change")
    args = parser.parse_args()

    common.banner("scale", connections=args.connections, duration=args.duration)
    # Django is set up once per process: each size is measured by a child run of this script.
    small, small_pages = run_child(SMALL_DB, args.small, True, args)
    large, large_pages = run_child(LARGE_DB, args.large, args.fresh, args)

    if not args.pages_only:
        print(f"\n{args.connections} connections, random sessions out of each set:")
        print(common.HEADER)
        for results in (small, large):
            for r in results.values():
                print(r.row(results["bare"]))
        print()
    labels = {"context": "context, random sessions (read cache on)",
              "prompt": "prompt, random sessions (read cache on)",
              "context hot": f"context, {HOT_SESSIONS:,} active sessions", "context db": "context, no read cache"}
    for name in labels if not args.pages_only else ():
        ratio = large[name].p50_ms / small[name].p50_ms
        print(f"{labels[name]}: p50 {small[name].p50_ms:.2f} ms at {args.small:,} sessions, {large[name].p50_ms:.2f} "
              f"ms at {args.large:,}: ratio {ratio:.2f} (target <= 1.5: {common.verdict(ratio <= 1.5)})")
    print("\nstaff sessions page (/), logged in, one request at a time, p50 / max ms:")
    print(f"{'filter':<32} {args.small:>12,} {args.large:>16,}")
    for label, _ in STAFF_FILTERS:
        s, big = small_pages[label], large_pages[label]
        print(f"{label:<32} {s[0]:7.1f}/{s[1]:<6.0f} {big[0]:9.1f}/{big[1]:<6.0f} (status {big[2]}, "
              f"target p50 < 300 ms: {common.verdict(big[0] < 300 and big[2] == 200)})")
    if args.drop:
        common.drop_database(LARGE_DB)
    common.drop_database(SMALL_DB)
    return 0


def run_child(db_name: str, count: int, fresh: bool, args) -> tuple[dict, dict]:
    """Measure one size in a fresh interpreter (Django is set up once per process)."""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--measure", db_name, str(count), "1" if fresh else "0",
           str(args.connections), str(args.duration), "1" if args.pages_only else "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.ROOT)
    for line in proc.stdout.splitlines():
        if not line.startswith("RESULT "):
            print(line, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {db_name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    payload = json.loads(next(line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")))
    results = {k: common.Result(**v) for k, v in payload["results"].items()}
    return results, {k: tuple(v) for k, v in payload["pages"].items()}


def child() -> int:
    import dataclasses
    import json

    _, db_name, count, fresh, connections, duration, pages_only = sys.argv[1:8]
    results, pages = measure(db_name, int(count), fresh=fresh == "1", connections=int(connections),
                             duration=float(duration), pages_only=pages_only == "1")
    payload = {"results": {k: dataclasses.asdict(v) for k, v in results.items()}, "pages": pages}
    print("RESULT " + json.dumps(payload), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        sys.exit(child())
    sys.exit(main())
