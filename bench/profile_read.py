"""Where a read request spends its time: cProfile over in-process requests (no server, no network).

    .venv/bin/python bench/profile_read.py [--requests 3000] [--path context|prompt|bare] [--sort tottime]

Uses the same settings as the benchmarks (bench.settings, PostgreSQL, throttle counters in Redis),
so the profile shows the middleware, authentication, throttle and queries a served request runs.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

PATHS = {
    "context": "/api/v1/sessions/bench-{i}/context",
    "prompt": "/api/v1/sessions/bench-{i}/context/prompt",
    "bare": "/bench/bare",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--path", choices=sorted(PATHS), default="context")
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    common.setup_django("sessionctx_bench_profile")
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench import data
    from bench.read_path import create_key

    data.generate(0, 100, revisions=10, progress=False)
    key = create_key("read")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="127.0.0.1")
    path = PATHS[args.path]
    for i in range(50):  # warm caches and the connection
        client.get(path.format(i=i % 100))
    with CaptureQueriesContext(connection) as queries:
        resp = client.get(path.format(i=1))
    print(f"one request: status {resp.status_code}, {len(queries)} queries")
    for q in queries:
        print(f"  {q['time']}s  {q['sql'][:150]}")
    reset_queries()

    began = time.perf_counter()
    for i in range(args.requests):
        client.get(path.format(i=i % 100))
    plain = time.perf_counter() - began
    print(f"\n{args.requests} requests in-process: {plain / args.requests * 1000:.2f} ms each (not profiled)")

    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for i in range(args.requests):
        client.get(path.format(i=i % 100))
    profiler.disable()
    elapsed = time.perf_counter() - began
    print(f"{args.requests} requests in-process: {elapsed / args.requests * 1000:.2f} ms each (profiled)")
    pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.top)
    connection.close()
    common.drop_database("sessionctx_bench_profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
