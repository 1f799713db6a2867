"""Write path: POST .../messages (a full turn, so an auto-update is queued) and PATCH .../context with
If-Match, against the bare endpoint in the same run.

gunicorn (bench.settings) against PostgreSQL with a Redis broker and one Celery worker taking the
queued updates (offline extractor), as in production; N concurrent clients on loopback (wrk).

    .venv/bin/python bench/write_path.py [--sessions 1000] [--no-worker]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

QUEUE = f"sessionctx-bench-{os.getpid()}"
BROKER = f"{common.REDIS}/13"

# Each wrk thread owns a disjoint block of sessions and goes round them, so a session's next PATCH is
# sent long after its previous answer came back with the new version (read from the answer body).
PATCH_LUA = """
local counter = 0
local versions = {}
local block = %(block)d
first, turn = 0, 0  -- globals: setup() sets `first` in each thread
setup = function(thread)
  thread:set("first", counter * block)
  counter = counter + 1
end
request = function()
  local i = %(offset)d + first + (turn %% block)
  turn = turn + 1
  local v = versions[i] or %(version)d
  local body = '{"summary": "Turn ' .. turn .. ': the user confirmed the new delivery address.", "reason": "bench"}'
  local headers = {}
  for k, val in pairs(wrk.headers) do headers[k] = val end
  headers["If-Match"] = '"' .. v .. '"'
  headers["Content-Type"] = "application/json"
  return wrk.format("PATCH", string.format("/api/v1/sessions/bench-%%d/context", i), headers, body)
end
counts = {}
response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 200 then
    local sid = tonumber(body:match('"session_id"%%s*:%%s*"bench%%-(%%d+)"'))
    local version = tonumber(body:match('"version"%%s*:%%s*(%%d+)'))
    if sid and version then versions[sid] = version end
  end
end
"""

POST_BODY = json.dumps({"messages": [
    {"role": "user", "content": "The parcel still has not arrived; can you check order 4412?"},
    {"role": "assistant", "content": "Order 4412 left the depot this morning and arrives tomorrow before noon."},
]})


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    celery = str(Path(sys.executable).with_name("celery"))
    proc = subprocess.Popen([celery, "-A", "sessionctx", "worker", "-Q", QUEUE, "-c", "1", "--without-gossip",
                             "--without-mingle", "--without-heartbeat", "-l", "warning"],
                            cwd=common.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(3)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=common.CONNECTIONS)
    parser.add_argument("--duration", type=float, default=common.DURATION)
    parser.add_argument("--no-worker", action="store_true", help="queue updates without a worker taking them")
    args = parser.parse_args()

    common.banner("write path", connections=args.connections, duration=args.duration)
    extra = {"CELERY_BROKER_URL": BROKER, "CELERY_QUEUE": QUEUE}
    common.setup_django(**extra)
    from django.db.models import Count

    from bench import data
    from bench.read_path import create_key
    from contexts.models import ExtractionRun, Message, Revision

    # POSTs go to the first half, PATCHes to the second: the worker's updates after a POST change the
    # version, which the PATCH clients would only learn from a 412.
    data.generate(0, 2 * args.sessions, revisions=10, progress=False)
    key = create_key("read", "write")
    env = common.bench_env(**extra)
    auth = {"Authorization": f"Bearer {key}"}
    worker = None if args.no_worker else start_worker(env)
    try:
        with common.Gunicorn(env) as server:
            print(f"\n{server.label}, {args.sessions} sessions, {args.connections} connections, "
                  f"{'no worker' if worker is None else 'one Celery worker taking the queued updates'}:")
            results = {"bare": common.load("GET /bench/bare", server.base + "/bench/bare",
                                           connections=args.connections, duration=args.duration)}
            before = Message.objects.count(), ExtractionRun.objects.count()
            post_lua = (f"wrk.method = 'POST'\nwrk.body = {json.dumps(POST_BODY)}\n"
                        "wrk.headers['Content-Type'] = 'application/json'\n"
                        + common.random_path_lua("/api/v1/sessions/bench-%d/messages", args.sessions))
            results["post"] = common.load("POST .../messages (turn)", server.base + "/", headers=auth,
                                          lua=post_lua, connections=args.connections, duration=args.duration,
                                          warmup=0)
            posted = Message.objects.count() - before[0], ExtractionRun.objects.count() - before[1]
            revisions_before = Revision.objects.filter(source="api").count()
            patch_lua = PATCH_LUA % {"block": args.sessions // 2, "version": 10, "offset": args.sessions}
            patch_lua += common.STATUS_REPORT_LUA
            results["patch"] = common.load("PATCH .../context (If-Match)", server.base + "/", headers=auth,
                                           lua=patch_lua, connections=args.connections, duration=args.duration,
                                           warmup=0)
            revised = Revision.objects.filter(source="api").count() - revisions_before
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
    bare = results["bare"]
    print(common.HEADER)
    for r in results.values():
        print(r.row(bare))
    for name in ("post", "patch"):
        print(f"  statuses for {name}: {dict(sorted(results[name].statuses.items()))}")
    runs = dict(ExtractionRun.objects.values_list("status").annotate(n=Count("id")))
    print(f"\nPOST: {posted[0]} messages stored, {posted[1]} updates queued; runs by status now: {runs}")
    print(f"PATCH: {revised} API revisions written for {results['patch'].statuses.get(200, 0)} answers 200")
    import redis

    redis.Redis.from_url(BROKER).delete(QUEUE)
    from django.db import connection

    connection.close()
    common.drop_database(common.BENCH_DB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
