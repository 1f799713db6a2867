"""Read path: what agents call before every model call, against a bare endpoint in the same run.

gunicorn (bench.settings) against PostgreSQL (a dedicated bench database), N concurrent clients on
loopback (wrk). Prints requests/s, p50/p99, gunicorn CPU and Redis commands per request, and ratios to
/bench/bare for GET .../context, GET .../context/prompt and the conditional If-None-Match -> 304.

    .venv/bin/python bench/read_path.py [--sessions 1000] [--duration 30 --rounds 10] [--configs]
    .venv/bin/python bench/read_path.py --tree before=/tmp/sessionctx-before --tree after=. --duration 30 --rounds 10

--tree NAME=PATH (repeatable) serves each checkout from its own directory (its own code, its own bench.settings
and bench/urls.py, its own bench database and Redis database) and measures them in alternating rounds; the first
tree is the baseline of the printed after/before ratios. --configs also compares gunicorn worker configurations
(this checkout only).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

CONTEXT = "/api/v1/sessions/bench-%d/context"
PROMPT = "/api/v1/sessions/bench-%d/context/prompt"


def create_key(*scopes: str) -> str:
    from contexts import services

    _, raw = services.api_key_create(name="bench", scopes=list(scopes or ("read", "write")))
    return raw


CACHE_DBS = [14, 12, 11, 10]  # one Redis database per tree (13 is memory.py's broker, 15 the tests')


@dataclasses.dataclass
class Served:
    """A tree prepared for the read benchmark: its environment, API key and (once started) its server."""

    tree: common.Tree
    env: dict[str, str]
    key: str
    redis_url: str
    db_name: str
    server: common.Gunicorn | None = None
    etags: list[str] = dataclasses.field(default_factory=list)


def prepare(tree: common.Tree, index: int, count: int, *, own_database: bool) -> Served:
    """A fresh bench database migrated by the tree's own code, `count` sessions, a read key made by the tree."""
    import redis

    db_name = f"{common.BENCH_DB}_{tree.name}" if own_database else common.BENCH_DB
    redis_url = f"{common.REDIS}/{CACHE_DBS[index]}"
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()  # no answer or key cached by an earlier run of any tree
    common.recreate_database(db_name)
    env = common.bench_env(db_name, tree=tree.path, CACHE_URL=redis_url)
    common.manage(tree.path, env, "migrate", "--verbosity", "0")
    from bench import data

    data.generate(0, count, revisions=10, progress=False, database_url=f"{common.PG_SERVER}/{db_name}")
    key = common.manage(tree.path, env, "create_api_key", "bench", "--scopes", "read").strip().splitlines()[-1]
    return Served(tree, env, key, redis_url, db_name)


def fetch_etags(base: str, key: str, count: int) -> list[str]:
    etags = []
    for i in range(count):
        status, headers, body = common.http("GET", base + CONTEXT % i, headers={"Authorization": f"Bearer {key}"})
        if status != 200:
            raise RuntimeError(f"GET context answered {status}: {body[:300]!r}")
        etag = headers.get("ETag") or headers.get("Etag")
        if not etag:
            return []
        etags.append(etag)
    return etags


def etag_lua(etags: list[str]) -> str:
    table = ",".join(json.dumps(e) for e in etags)
    return (
        f"local etags = {{{table}}}\n"
        "init = function(args) math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0)) end\n"
        "request = function()\n"
        "  local i = math.random(0, #etags - 1)\n"
        "  local headers = {}\n"
        "  for k, v in pairs(wrk.headers) do headers[k] = v end\n"
        "  headers[\"If-None-Match\"] = etags[i + 1]\n"
        f"  return wrk.format(nil, string.format({json.dumps(CONTEXT)}, i), headers)\n"
        "end\n"
    )


def available(base: str, key: str) -> dict[str, bool]:
    auth = {"Authorization": f"Bearer {key}"}
    return {
        "context": common.http("GET", base + CONTEXT % 0, headers=auth)[0] == 200,
        "prompt": common.http("GET", base + PROMPT % 0, headers=auth)[0] == 200,
    }


def run(server: common.Gunicorn, key: str, count: int, *, etags: list[str] | None = None,
        connections: int = common.CONNECTIONS, duration: float = common.DURATION,
        prefix: str = "", rotate: int = 0, redis_url: str | None = None) -> dict[str, common.Result]:
    """The read benchmark on sessions bench-0 .. bench-<count - 1>: bare, bare + Redis, context, prompt, 304.

    `rotate`: which of the cached reads goes first. The sessions are not read while the others are measured
    (bare, another tree), long enough for their cached answers to expire, so the first cached read measured
    after them refills the whole set from PostgreSQL; rounds rotate that cost over context, prompt and 304
    instead of always charging it to context.
    """
    auth = {"Authorization": f"Bearer {key}"}
    have = available(server.base, key)
    measure = {"connections": connections, "duration": duration, "cpu_pids": server.pids(), "redis_url": redis_url}
    results = {"bare": common.load(f"{prefix}GET /bench/bare", server.base + "/bench/bare", **measure),
               "bare+redis": common.load(f"{prefix}GET /bench/bare-redis", server.base + "/bench/bare-redis",
                                         **measure)}
    cached = []  # (name, label, wrk script)
    if have["context"]:
        cached.append(("context", "GET .../context", common.random_path_lua(CONTEXT, count)))
    if have["prompt"]:
        cached.append(("prompt", "GET .../context/prompt", common.random_path_lua(PROMPT, count)))
    if etags:
        cached.append(("304", "GET .../context If-None-Match", etag_lua(etags)))
    done = {}
    for i in range(len(cached)):
        name, label, lua = cached[(i + rotate) % len(cached)]
        done[name] = common.load(f"{prefix}{label}", server.base + "/", headers=auth, lua=lua, **measure)
    results |= {name: done[name] for name, _, _ in cached}  # reported in the same order whatever went first
    return results


def floor_run(floor: common.Gunicorn, *, connections: int, duration: float) -> common.Result:
    """The server's own floor: the same gunicorn configuration serving bench/floor_wsgi.py (no Django)."""
    return common.load("server floor (no Django)", floor.base + "/floor", connections=connections,
                       duration=duration, cpu_pids=floor.pids())


def combine(rounds: list[dict[str, common.Result]], *, label: str = "") -> dict[str, common.Result]:
    """Per endpoint over the rounds: mean throughput, median p50 and p99, all status codes.

    On a shared machine the load changes from second to second; an endpoint measured in one block of time
    and bare in another compare two machines, not two endpoints. Rounds measure every endpoint in turn, so
    each one sees the same mix of quiet and busy seconds.
    """
    if len(rounds) > 1 and "bare" in rounds[0]:
        print(f"{label}throughput / bare, per round: " + "; ".join(
            ", ".join(f"{name} {r.rps / one['bare'].rps:.2f}" for name, r in one.items() if name != "bare")
            for one in rounds))
    combined = {}
    for name in rounds[0]:
        parts = [one[name] for one in rounds]
        statuses: dict[int, int] = {}
        for part in parts:
            for code, n in part.statuses.items():
                statuses[code] = statuses.get(code, 0) + n
        combined[name] = dataclasses.replace(
            parts[0], rps=statistics.mean(p.rps for p in parts), p50_ms=statistics.median(p.p50_ms for p in parts),
            p99_ms=statistics.median(p.p99_ms for p in parts), requests=sum(p.requests for p in parts),
            errors=sum(p.errors for p in parts), statuses=statuses,
            cpu_us=statistics.mean(p.cpu_us for p in parts) if all(p.cpu_us for p in parts) else None,
            redis_commands=(statistics.mean(p.redis_commands for p in parts)
                            if all(p.redis_commands is not None for p in parts) else None))
    return combined


def print_results(results: dict[str, common.Result]) -> None:
    bare = results["bare"]
    print(common.HEADER)
    for r in results.values():
        print(r.row(bare))
    for name, r in results.items():
        if r.statuses and name != "bare":
            print(f"  statuses for {name}: {dict(sorted(r.statuses.items()))}")
    if all(r.cpu_us for r in results.values()):
        # What a request costs the web server, whatever else the machine runs: bare / endpoint is the
        # throughput ratio a CPU-bound server would reach (wrk, Redis and PostgreSQL not counted).
        print("gunicorn CPU per request: " + ", ".join(
            f"{name} {r.cpu_us:.0f} us"
            + ("" if name in ("bare", "floor") else f" (bare/this {bare.cpu_us / r.cpu_us:.2f})")
            for name, r in results.items()))
    if any(r.redis_commands is not None for r in results.values()):
        # Round trips to Redis per request (a pipeline or a Lua script counts its commands, not one).
        print("Redis commands per request: " + ", ".join(
            f"{name} {r.redis_commands:.2f}" for name, r in results.items() if r.redis_commands is not None))


def check_targets(results: dict[str, common.Result], connections: int) -> list[str]:
    bare = results["bare"]
    lines = []
    for name in ("context", "prompt"):
        r = results.get(name)
        if r is None:
            lines.append(f"{name}: endpoint not available in this tree, not measured")
            continue
        ratio = r.rps / bare.rps
        lines.append(f"{name}: throughput {ratio:.2f} of bare (target >= 0.7: {common.verdict(ratio >= 0.7)}), "
                     f"p99 {r.p99_ms:.1f} ms at {connections} clients (target < 25 ms: "
                     f"{common.verdict(r.p99_ms < 25)}; bare's own p99 {bare.p99_ms:.1f} ms)")
    floor = results.get("floor")
    if floor is not None:
        # With `connections` clients each waiting for its answer, the mean latency is connections / req/s;
        # a server that cannot answer faster than that cannot have a p99 below it either.
        lines.append(f"server floor (the same gunicorn, a constant WSGI app, no Django): {floor.rps:.0f} req/s, "
                     f"p50 {floor.p50_ms:.1f} ms, p99 {floor.p99_ms:.1f} ms, {floor.cpu_us or 0:.0f} us of CPU per "
                     f"request; bare costs {bare.cpu_us / floor.cpu_us if bare.cpu_us and floor.cpu_us else 0:.1f}x "
                     f"that. At {connections} clients a mean of 25 ms needs {connections / 0.025:.0f} req/s.")
    redis_floor = results.get("bare+redis")
    if redis_floor is not None and "context" in results:
        # Any read that checks shared state per request (the throttle, a revoked key) pays one round trip
        # to it; this is how much of bare that round trip alone leaves, and what the read adds to it.
        lines.append(f"one Redis round trip alone: {redis_floor.rps / bare.rps:.2f} of bare; context "
                     f"{results['context'].rps / redis_floor.rps:.2f} and prompt "
                     f"{results['prompt'].rps / redis_floor.rps if 'prompt' in results else 0:.2f} of bare + one "
                     "Redis GET")
    if "304" in results and "context" in results:
        r, c = results["304"], results["context"]
        ok = r.rps > c.rps and r.p50_ms <= c.p50_ms and set(r.statuses) == {304}
        not_modified = r.statuses.get(304, 0)
        lines.append(f"304: {r.rps / c.rps:.2f}x the throughput of a full context read, p50 {r.p50_ms:.2f} vs "
                     f"{c.p50_ms:.2f} ms, {not_modified} of {sum(r.statuses.values())} answers were 304 (cheaper: "
                     f"{common.verdict(ok)})")
    return lines


CONFIGS = [
    ("sync", 3, 1), ("sync", 5, 1),
    ("gthread", 2, 4), ("gthread", 3, 4), ("gthread", 4, 2), ("gthread", 2, 8),
    ("gthread", 2, 2), ("gthread", 3, 2), ("gthread", 4, 1), ("gthread", 6, 1),
]


def compare(trees: list[Served], combined: dict[str, dict[str, common.Result]]) -> None:
    """Side by side: each endpoint in each tree, and every tree against the first."""
    base = trees[0].tree.name
    names = [n for n in combined[base] if n != "floor" and all(n in combined[t.tree.name] for t in trees)]
    print(f"\n{'endpoint':<12} {'tree':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'÷ bare':>7} {'CPU us':>7} "
          f"{'Redis/req':>9} {'req/s ÷ ' + base:>14} {'p50 ÷ ' + base:>12} {'CPU ÷ ' + base:>12}")
    for name in names:
        for served in trees:
            one = combined[served.tree.name]
            r, b = one[name], combined[base][name]
            cpu_ratio = f"{r.cpu_us / b.cpu_us:.2f}" if r.cpu_us and b.cpu_us else "-"
            print(f"{name:<12} {served.tree.name:<10} {r.rps:8.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
                  f"{r.rps / one['bare'].rps:7.2f} {r.cpu_us or 0:7.0f} "
                  f"{r.redis_commands if r.redis_commands is not None else float('nan'):9.2f} "
                  f"{r.rps / b.rps:14.2f} {r.p50_ms / b.p50_ms:12.2f} {cpu_ratio:>12}")


def compare_configs(key: str, env: dict[str, str], args) -> None:
    print("\ngunicorn configurations (bare and GET .../context, same data):")
    print(f"{'config':<26} {'bare req/s':>10} {'ctx req/s':>10} {'ctx p50':>8} {'ctx p99':>8} {'ratio':>6}")
    for worker_class, workers, threads in CONFIGS:
        with common.Gunicorn(env, workers=workers, threads=threads, worker_class=worker_class) as server:
            res = run(server, key, args.sessions, connections=args.connections, duration=args.duration)
        ctx = res.get("context")
        if ctx:
            print(f"{server.label:<26} {res['bare'].rps:10.0f} {ctx.rps:10.0f} {ctx.p50_ms:8.2f} "
                  f"{ctx.p99_ms:8.2f} {ctx.rps / res['bare'].rps:6.2f}", flush=True)
        else:
            print(f"{server.label:<26} {res['bare'].rps:10.0f}  (no context endpoint)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=common.CONNECTIONS)
    parser.add_argument("--duration", type=float, default=common.DURATION,
                        help="seconds measured per endpoint and tree, over all rounds")
    parser.add_argument("--configs", action="store_true", help="also compare gunicorn worker configurations")
    parser.add_argument("--rounds", type=int, default=6,
                        help="split the duration into rounds of bare, bare + Redis, context, prompt, 304 in turn "
                             "(the cached reads in a rotating order; the trees in alternating order), so a change "
                             "in the machine's load hits every endpoint and every tree alike")
    parser.add_argument("--tree", action="append", metavar="NAME=PATH",
                        help="a checkout to measure (repeatable; the first is the baseline); default: this one")
    args = parser.parse_args()
    trees = common.parse_trees(args.tree)
    if len(trees) > len(CACHE_DBS):
        raise SystemExit(f"at most {len(CACHE_DBS)} trees")

    common.banner("read path", connections=args.connections, duration=args.duration)
    for tree in trees:
        print(f"tree {tree.name}: {tree.path} at {git_head(tree.path)}")
    served = [prepare(tree, i, args.sessions, own_database=len(trees) > 1) for i, tree in enumerate(trees)]

    if args.configs:
        compare_configs(served[0].key, served[0].env, args)

    step = args.duration / args.rounds
    with contextlib.ExitStack() as stack:
        floor = stack.enter_context(common.Gunicorn(common.bench_env(), app="bench.floor_wsgi:application"))
        for one in served:
            one.server = stack.enter_context(common.Gunicorn(one.env, tree=one.tree.path))
            if available(one.server.base, one.key)["context"]:
                one.etags = fetch_etags(one.server.base, one.key, args.sessions)
        print(f"\n{floor.label}, {args.sessions} sessions with 10 revisions each, {args.connections} connections, "
              f"{args.rounds} interleaved rounds of {step:.0f} s per endpoint{' and tree' if len(trees) > 1 else ''}:",
              flush=True)
        floors, rounds = [], {one.tree.name: [] for one in served}
        for i in range(args.rounds):
            floors.append(floor_run(floor, connections=args.connections, duration=step))
            # Alternate which tree goes first: the one measured second reads a cache the first one's idle
            # time let expire no more than the first does.
            order = served if i % 2 == 0 else served[::-1]
            for one in order:
                rounds[one.tree.name].append(run(
                    one.server, one.key, args.sessions, etags=one.etags, connections=args.connections,
                    duration=step, rotate=i, redis_url=one.redis_url,
                    prefix=f"[{one.tree.name}] " if len(trees) > 1 else ""))
    floor_result = combine([{"floor": f} for f in floors])["floor"]
    combined = {}
    for one in served:
        name = one.tree.name
        print(f"\n--- {name} ({one.tree.path}) ---")
        combined[name] = {"floor": floor_result} | combine(rounds[name], label=f"{name}: ")
        print_results(combined[name])
        print()
        for line in check_targets(combined[name], args.connections):
            print(line)
    if len(trees) > 1:
        compare(served, combined)
    for one in served:
        common.drop_database(one.db_name)
    return 0


def git_head(path: Path) -> str:
    """The commit a checkout is at (and whether its files differ from it)."""
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=path, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                           capture_output=True, text=True)
    return (head.stdout.strip() or "not a git checkout") + (" (with local changes)" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    sys.exit(main())
