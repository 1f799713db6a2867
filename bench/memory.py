"""Memory: peak RSS of a gunicorn web worker after rounds of the read benchmark, and of a Celery worker
after rounds of 1,000 extractions (offline extractor), to show there is no growth across runs.

    .venv/bin/python bench/memory.py [--rounds 3] [--extractions 1000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.read_path import CONTEXT, PROMPT, create_key  # noqa: E402

QUEUE = f"sessionctx-bench-memory-{os.getpid()}"
BROKER = f"{common.REDIS}/13"


def mib(kib: int) -> float:
    return kib / 1024


def web_rounds(rounds: int, sessions: int, duration: float) -> list[tuple[float, float]]:
    """(max VmRSS, max VmHWM) over the web workers after each round, in MiB."""
    key = create_key("read")
    auth = {"Authorization": f"Bearer {key}"}
    out = []
    with common.Gunicorn(common.bench_env()) as server:
        for n in range(rounds):
            for pattern in (CONTEXT, PROMPT):
                r = common.load(f"round {n + 1}", server.base + "/", headers=auth,
                                lua=common.random_path_lua(pattern, sessions), duration=duration, warmup=0)
            mem = [common.rss_kib(pid) for pid in server.worker_pids()]
            out.append((mib(max(m.get("VmRSS", 0) for m in mem)), mib(max(m.get("VmHWM", 0) for m in mem))))
            print(f"  web round {n + 1}: {r.requests} prompt requests in the last run; "
                  f"RSS {out[-1][0]:.1f} MiB, peak {out[-1][1]:.1f} MiB", flush=True)
    return out


def celery_rounds(rounds: int, extractions: int) -> list[tuple[float, float]]:
    from django.db import transaction

    from contexts import services
    from contexts.extraction.runs import extraction_request
    from contexts.models import ExtractionRun

    celery = str(Path(sys.executable).with_name("celery"))
    worker = subprocess.Popen([celery, "-A", "sessionctx", "worker", "-Q", QUEUE, "-c", "1", "--without-gossip",
                               "--without-mingle", "--without-heartbeat", "-l", "warning"],
                              cwd=common.ROOT, env=common.bench_env(CELERY_BROKER_URL=BROKER, CELERY_QUEUE=QUEUE),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = []
    try:
        for n in range(rounds):
            began = time.monotonic()
            for i in range(extractions):
                with transaction.atomic():
                    session, _ = services.session_get_or_create(session_id=f"memory-{i}", mode="planning")
                    services.messages_append(session=session, messages=[
                        {"role": "user", "content": f"Round {n}: I need to renew passport {i} before June."},
                        {"role": "assistant", "content": "Here is the plan:\n1. Fill in the form\n"
                                                         "2. Book an appointment\n3. Bring two photos"},
                    ])
                    extraction_request(session=session, trigger="bench")
            while ExtractionRun.objects.filter(status__in=["queued", "running"]).exists():
                if worker.poll() is not None:
                    raise RuntimeError("the Celery worker exited")
                time.sleep(0.5)
            done = ExtractionRun.objects.filter(status="succeeded").count()
            pids = [worker.pid, *common.children(worker.pid)]
            mem = [common.rss_kib(pid) for pid in pids]
            out.append((mib(max(m.get("VmRSS", 0) for m in mem)), mib(max(m.get("VmHWM", 0) for m in mem))))
            print(f"  celery round {n + 1}: {extractions} extractions in {time.monotonic() - began:.0f} s "
                  f"({done} succeeded so far); RSS {out[-1][0]:.1f} MiB, peak {out[-1][1]:.1f} MiB", flush=True)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        import redis

        redis.Redis.from_url(BROKER).delete(QUEUE)
    return out


def growth(rows: list[tuple[float, float]]) -> str:
    # The first round includes warm-up (imports, caches); growth is judged from the second on.
    if len(rows) < 3:
        return "n/a (needs 3 rounds)"
    rss = rows[-1][0] - rows[1][0]
    peak = rows[-1][1] - rows[1][1]
    ok = rss <= max(2.0, 0.05 * rows[1][0]) and peak <= max(2.0, 0.05 * rows[1][1])
    return f"RSS {rss:+.1f} MiB, peak {peak:+.1f} MiB from round 2 to {len(rows)} (no growth: {common.verdict(ok)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--extractions", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=common.DURATION)
    args = parser.parse_args()

    common.banner("memory", duration=args.duration)
    common.setup_django(CELERY_BROKER_URL=BROKER, CELERY_QUEUE=QUEUE)
    from bench import data

    data.generate(0, args.sessions, revisions=10, progress=False)
    print(f"gunicorn {common.GUNICORN_WORKERS}x{common.GUNICORN_THREADS} gthread, read benchmark rounds "
          f"(context then prompt, {args.duration:.0f} s each):", flush=True)
    web = web_rounds(args.rounds, args.sessions, args.duration)
    print(f"Celery worker (prefork, 1 process), rounds of {args.extractions} extractions (offline extractor):",
          flush=True)
    cel = celery_rounds(args.rounds, args.extractions)
    print(f"\nweb worker:    peak RSS {max(p for _, p in web):.1f} MiB; {growth(web)}")
    print(f"celery worker: peak RSS {max(p for _, p in cel):.1f} MiB; {growth(cel)}")
    from django.db import connection

    connection.close()
    common.drop_database(common.BENCH_DB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
