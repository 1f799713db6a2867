"""Projects (#16) at scale: the scoped list and context read with N sessions in ONE project (what every read cost
before projects: one project holding everything is the old unscoped table) against the same N spread over K
projects, side by side in one run, the two layouts' rounds interleaved.

Both databases hold the same rows (bench/data.py, bench-<n>); in the spread layout bench-<n> belongs to project
bench-p<n mod K>. The key reads as project bench-p3 there and as `default` in the one-project layout, and asks
for exactly the same sessions in both (bench-<K*i + 3>), so the read cache sees the same ids. Measured per layout:
GET .../context with the read cache on and off, GET /api/v1/sessions (first page), ?user_id= (20 sessions a
user) and ?status=handoff_requested (sparse). The ratio is spread ÷ one (p50; target <= 1.2).

The databases (`sessionctx_bench_proj1`, `sessionctx_bench_proj10`) are kept and reused while they hold the rows
asked for; --fresh builds them again, --drop removes them at the end.

    BENCH_CACHE_URL=redis://127.0.0.1:6379/11 .venv/bin/python bench/projects.py [--sessions 1000000]
        [--projects 10] [--rounds 3] [--duration 10] [--fresh] [--drop]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

READ_PROJECT = 3  # the spread layout's key reads as bench-p3
CONTEXT = "/api/v1/sessions/bench-%d/context"
USERS = 50_000  # bench/data.py: user-<n mod 50000>


def db_name(projects: int) -> str:
    return f"sessionctx_bench_proj{projects}"


def strided_path_lua(pattern: str, count: int, *, stride: int, rest: int) -> str:
    """wrk script: each request asks for pattern % (stride * i + rest), i random in [0, count)."""
    return (
        "init = function(args) math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0)) end\n"
        f"request = function() return wrk.format(nil, string.format({json.dumps(pattern)}, "
        f"{stride} * math.random(0, {count - 1}) + {rest})) end\n"
    )


# --- preparing one layout (a child process: Django is set up once per process) ------------------------------


def rows_in(db: str, projects: int) -> int | None:
    import psycopg

    try:
        with psycopg.connect(f"{common.PG_SERVER}/{db}") as conn:
            n = conn.execute("SELECT count(*) FROM contexts_sessioncontext").fetchone()[0]
            k = conn.execute("SELECT count(DISTINCT project_id) FROM contexts_sessioncontext").fetchone()[0]
            return n if k == projects else None
    except psycopg.Error:
        return None


def prepare(db: str, sessions: int, projects: int, revisions: int, fresh: bool) -> dict:
    reuse = not fresh and rows_in(db, projects) == sessions
    common.setup_django(db, recreate=not reuse)
    from django.db import connection

    from bench import data
    from contexts import services
    from contexts.models import Project

    seconds = 0.0
    if reuse:
        print(f"reusing {db}: {sessions:,} sessions in {projects} project(s) (--fresh builds it again)", flush=True)
    else:
        print(f"generating {sessions:,} sessions ({revisions} revision(s) each) in {projects} project(s) "
              f"in {db} ...", flush=True)
        seconds = data.generate(0, sessions, revisions=revisions, projects=projects)
        print(f"  done in {seconds:.0f} s; sizes {data.table_sizes()}", flush=True)
    slug = "default" if projects == 1 else data.project_slug(READ_PROJECT)
    _, key = services.api_key_create(name="bench", scopes=["read"], project=Project.objects.get(slug=slug))
    connection.close()
    return {"key": key, "seconds": seconds, "slug": slug}


def run_prepare(db: str, args, projects: int) -> dict:
    cmd = [sys.executable, __file__, "--prepare", db, str(args.sessions), str(projects), str(args.revisions),
           "1" if args.fresh else "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.ROOT)
    for line in proc.stdout.splitlines():
        if not line.startswith("RESULT "):
            print(line, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"preparing {db} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(next(line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")))


# --- measuring both side by side ---------------------------------------------------------------------------------


def endpoints(args) -> dict[str, tuple[str, str | None, bool]]:
    """name -> (path, wrk Lua or None, read cache on)."""
    per_project = args.sessions // args.projects
    users = strided_path_lua("/api/v1/sessions?user_id=user-%d", USERS // args.projects, stride=args.projects,
                             rest=READ_PROJECT)
    reads = strided_path_lua(CONTEXT, per_project, stride=args.projects, rest=READ_PROJECT)
    return {
        "context (read cache)": (CONTEXT % READ_PROJECT, reads, True),
        "context (no read cache)": (CONTEXT % READ_PROJECT, reads, False),
        "list, first page": ("/api/v1/sessions", None, True),
        "list ?user_id=": ("/api/v1/sessions", users, True),
        "list ?status=handoff_requested": ("/api/v1/sessions?status=handoff_requested", None, True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--revisions", type=int, default=1,
                        help="revisions per session (neither the list nor the context read touches them)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--drop", action="store_true")
    args = parser.parse_args()
    if args.projects <= READ_PROJECT:
        raise SystemExit(f"--projects must be above {READ_PROJECT}")

    common.banner("projects: one project vs spread", connections=args.connections, duration=args.duration)
    layouts = {"one project": 1, f"{args.projects} projects": args.projects}
    prepared = {name: run_prepare(db_name(k), args, k) for name, k in layouts.items()}
    cache_base = os.environ.get("BENCH_CACHE_URL", f"{common.REDIS}/11").rsplit("/", 1)[0]
    cache_dbs = os.environ.get("BENCH_CACHE_DBS", "11,12").split(",")
    import redis

    servers: dict[tuple[str, bool], common.Gunicorn] = {}
    try:
        for (name, k), cache_db in zip(layouts.items(), cache_dbs, strict=True):
            cache_url = f"{cache_base}/{cache_db}"
            redis.Redis.from_url(cache_url).flushdb()  # this run's own Redis database: no entry of another run
            for cached in (True, False):
                env = common.bench_env(db_name(k), CACHE_URL=cache_url,
                                       SESSIONCTX_READ_CACHE="true" if cached else "false")
                servers[(name, cached)] = common.Gunicorn(env, workers=2, threads=4).__enter__()
        results: dict[tuple[str, str], list[common.Result]] = {}
        names = list(layouts)
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            print(f"round {r + 1}/{args.rounds} (first: {order[0]}) {time.strftime('%H:%M:%S')}", flush=True)
            for endpoint, (path, lua, cached) in endpoints(args).items():
                for layout in order:
                    server = servers[(layout, cached)]
                    headers = {"Authorization": f"Bearer {prepared[layout]['key']}"}
                    result = common.load(f"{endpoint} [{layout}]", server.base + path, headers=headers, lua=lua,
                                         connections=args.connections, duration=args.duration, warmup=3.0,
                                         cpu_pids=server.pids())
                    results.setdefault((endpoint, layout), []).append(result)
                    print("  " + result.row(), flush=True)
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)

    print(f"\n{args.sessions:,} sessions: all in one project vs over {args.projects} projects "
          f"({args.sessions // args.projects:,} in the key's); medians over {args.rounds} rounds "
          f"(req/s: mean), {args.connections} connections")
    one, spread = names
    print(f"{'endpoint':<32} {'layout':<14} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs':>8} {'errors':>6}")
    verdicts = []
    for endpoint in endpoints(args):
        row = {}
        for layout in names:
            rs = results[(endpoint, layout)]
            row[layout] = (statistics.mean(x.rps for x in rs), statistics.median(x.p50_ms for x in rs),
                           statistics.median(x.p99_ms for x in rs),
                           statistics.median(x.cpu_us or 0 for x in rs), sum(x.errors for x in rs))
            rps, p50, p99, cpu, errors = row[layout]
            print(f"{endpoint:<32} {layout:<14} {rps:7.0f} {p50:8.2f} {p99:8.2f} {cpu:8.0f} {errors:6d}")
        # Per round: the two layouts were measured back to back, so other people's load moves both alike.
        per_round = sorted(s.p50_ms / o.p50_ms for o, s in zip(results[(endpoint, one)], results[(endpoint, spread)],
                                                                 strict=True) if o.p50_ms)
        ratio = statistics.median(per_round) if per_round else float("inf")
        rps_ratio = row[one][0] / row[spread][0] if row[spread][0] else float("inf")
        verdicts.append(ratio <= 1.2)
        print(f"{'':<32} p50 spread ÷ one, median of the rounds' ratios: {ratio:.2f} "
              f"({', '.join(f'{r:.2f}' for r in per_round)}); req/s one ÷ spread (means): {rps_ratio:.2f} "
              f"(target p50 <= 1.2: {common.verdict(ratio <= 1.2)})")
    print(f"all within 1.2x: {common.verdict(all(verdicts))}")
    for name, k in layouts.items():
        if prepared[name]["seconds"]:
            print(f"seeding {name}: {prepared[name]['seconds']:.0f} s")
        if args.drop:
            common.drop_database(db_name(k))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--prepare":
        db, sessions, projects, revisions, fresh = sys.argv[2:7]
        out = prepare(db, int(sessions), int(projects), int(revisions), fresh == "1")
        print("RESULT " + json.dumps(out), flush=True)
        sys.exit(0)
    sys.exit(main())
