"""Retention purge under load: how long deleting old sessions takes, and what it does to context reads meanwhile.

A bench database with `--old` sessions untouched for 200 days (each with messages and revisions) and `--fresh`
recent ones, spread over `--projects` projects (bench-<n> in project bench-p<n mod K>; 1: all in `default`), each
project with a retention period of 90 days. gunicorn serves GET .../context for random fresh sessions of one
project (bench-p0's key; wrk, read cache off so every read goes to PostgreSQL) for `--duration` seconds without
the purge, then while the periodic purge (services.governance.sessions_purge_by_setting, what celery beat runs:
project after project, batches of --batch sessions) deletes the old ones, then without it again. Prints req/s,
p50 and p99 of each window, the purge's time and rate, the audit rows it wrote, and the p99 ratio (during ÷ the
mean of before and after), judged against 2.

    BENCH_CACHE_URL=redis://127.0.0.1:6379/4 .venv/bin/python bench/purge.py [--old 100000] [--fresh 10000]
        [--projects 10]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, data  # noqa: E402

DB = "sessionctx_bench_purge"
CONTEXT = "/api/v1/sessions/bench-%d/context"

MESSAGES_SQL = """
INSERT INTO contexts_message (session_id, seq, role, content, created_at)
SELECT s.id, m, CASE WHEN m %% 2 = 1 THEN 'user' ELSE 'assistant' END,
       'How do I move the sessions without downtime? Turn ' || m, s.updated_at
FROM contexts_sessioncontext s CROSS JOIN generate_series(1, %(messages)s) AS m
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=int, default=100_000)
    parser.add_argument("--fresh", type=int, default=10_000, help="recent sessions, over all projects")
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--revisions", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    common.setup_django(DB, SESSIONCTX_READ_CACHE="false", SESSIONCTX_DELETE_BATCH_SIZE=str(args.batch),
                        SESSIONCTX_RETENTION_DAYS="0")
    from django.db import connection

    from contexts import services
    from contexts.models import DataDeletion, Project
    from contexts.services.governance import sessions_purge_by_setting

    total = args.fresh + args.old
    print(f"seeding {total:,} sessions over {args.projects} project(s) ...", flush=True)
    data.generate(0, total, revisions=args.revisions, progress=False, projects=args.projects)
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute(MESSAGES_SQL, {"messages": args.messages})
        # bench-<fresh> and above: untouched for 200 days (their messages too).
        cur.execute("UPDATE contexts_sessioncontext SET updated_at = now() - interval '200 days' "
                    "WHERE id > (SELECT min(id) FROM contexts_sessioncontext) + %s", [args.fresh - 1])
        cur.execute("UPDATE contexts_message m SET created_at = s.updated_at FROM contexts_sessioncontext s "
                    "WHERE m.session_id = s.id")
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("ANALYZE")
    Project.objects.update(retention_days=90)
    reader = Project.objects.get(slug="default" if args.projects == 1 else data.project_slug(0))
    _, key = services.api_key_create(name="bench", scopes=["read"], project=reader)
    connection.close()

    env = common.bench_env(DB, SESSIONCTX_READ_CACHE="false")
    # The reader's project's fresh sessions: bench-<K * i> for i below fresh / K.
    lua = ("init = function(args) math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0)) end\n"
           f"request = function() return wrk.format(nil, string.format({CONTEXT!r}, "
           f"{args.projects} * math.random(0, {args.fresh // args.projects - 1}))) end\n")
    headers = {"Authorization": f"Bearer {key}"}
    print(common.machine(), flush=True)
    with common.Gunicorn(env) as server:
        def window(name: str) -> common.Result:
            return common.load(name, server.base + CONTEXT % 0, headers=headers, lua=lua,
                               connections=args.connections, duration=args.duration)

        before = window("context, no purge (before)")
        purge: dict = {}

        def run_purge():
            began = time.monotonic()
            purge["counts"] = sessions_purge_by_setting()
            purge["seconds"] = time.monotonic() - began
            purge["audits"] = list(DataDeletion.objects.values_list("project__slug", "counts__sessions"))
            connection.close()

        worker = threading.Thread(target=run_purge)
        worker.start()
        during = window("context, during the purge")
        purge_running_at_end = worker.is_alive()
        worker.join()
        after = window("context, no purge (after)")

    print(common.HEADER)
    for result in (before, during, after):
        print(result.row())
    counts, seconds = purge["counts"], purge["seconds"]
    print(f"purge: {counts['sessions']:,} sessions ({counts['messages']:,} messages, {counts['revisions']:,} "
          f"revisions) in {seconds:.1f} s = {counts['sessions'] / seconds:,.0f} sessions/s, batches of "
          f"{args.batch}; still running when the 'during' window ended: {purge_running_at_end}")
    print(f"audit rows (project, sessions): {purge['audits']}")
    baseline = (before.p99_ms + after.p99_ms) / 2
    ratio = during.p99_ms / baseline if baseline else float("inf")
    print(f"p99 during ÷ without: {ratio:.2f} (target ≤ 2): {common.verdict(ratio <= 2)}")
    common.drop_database(DB)


if __name__ == "__main__":
    main()
