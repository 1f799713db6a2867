"""Extractions per second with real Celery workers, against the limit C/L set by the model's latency.

200 sessions each get one extraction; the fake model answers after L = 0.5 s; the workers have a
total concurrency C = 32 (worker processes, threads pool). Target: throughput >= 0.8 x C/L. The workers first
take an untimed warm-up round of 2C extractions (its figure is printed too), so the timed round sees them with
their connections open, as they are after their first minutes in production.

    .venv/bin/python bench/extraction_throughput.py   (PostgreSQL: BENCH_DATABASE_URL; Redis: BENCH_REDIS_URL)
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from extraction_common import bounded_model, setup_django

SESSIONS = int(os.environ.get("BENCH_SESSIONS", 200))
LATENCY = float(os.environ.get("BENCH_LATENCY", 0.5))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 32))
# Worker processes sharing C (threads pool each): one per core gets past one interpreter's GIL.
PROCESSES = int(os.environ.get("BENCH_WORKERS", 2))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids() -> list[int]:
    """PostgreSQL backends connected to this database (the workers', this process's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [pid for (pid,) in cursor.fetchall()]


def main() -> None:
    from tests.fake_openai import FakeOpenAI

    queue = f"sessionctx-bench-{uuid.uuid4().hex[:8]}"
    with FakeOpenAI(default=bounded_model(delay=LATENCY)) as fake:
        env = {"SESSIONCTX_MODEL": "fake-model", "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": fake.url,
               "OPENAI_MAX_RETRIES": "0", "CELERY_BROKER_URL": REDIS_URL, "CELERY_QUEUE": queue}
        database_url = setup_django(env)
        from django.db import transaction

        from contexts import services
        from contexts.models import ExtractionRun, SessionContext
        from tests.tasks.workers import Worker

        prefix = f"bench-tp-{uuid.uuid4().hex[:6]}"
        # Each round's runs share a trigger: the poll below counts them without 200 ids.
        tag, warm_tag = f"{prefix}-timed"[:32], f"{prefix}-warm"[:32]

        def make_sessions(name: str, count: int) -> list:
            made = []
            for i in range(count):
                session, _ = services.session_get_or_create(session_id=f"{prefix}-{name}-{i}", mode="planning")
                services.messages_append(session=session, messages=[
                    {"role": "user", "content": f"I need help planning release {i} of the billing service."},
                    {"role": "assistant", "content": "Plan:\n1. Freeze the branch\n2. Run the migration\n3. Deploy"}])
                made.append(session)
            return made

        def extract_all(batch: list, trigger: str) -> tuple[list, float, float]:
            """One extraction per session, through the workers; (run ids, seconds to send, seconds to finish)."""
            # The runs are created first; the clock starts when they are handed to the broker (on commit).
            with transaction.atomic():
                ids = [extraction_request(session=s, trigger=trigger).pk for s in batch]
                started = time.monotonic()
            sent = time.monotonic()
            while True:
                # Polling with the 200 run ids cost the bench process (and PostgreSQL) more CPU than the
                # workers could spare: the trigger names the same runs.
                done = ExtractionRun.objects.filter(trigger=trigger, status__in=["succeeded", "failed", "skipped"])
                if done.count() == len(ids):
                    break
                if time.monotonic() - started > 120:
                    raise SystemExit("timed out after 120 s")
                time.sleep(0.05)
            return ids, sent - started, time.monotonic() - started

        warm = make_sessions("warm", 2 * CONCURRENCY)
        sessions = make_sessions("timed", SESSIONS)
        workers = [Worker(f"bench{n}", queue=queue, env={**env, "DATABASE_URL": database_url}, pool="threads",
                          concurrency=CONCURRENCY // PROCESSES) for n in range(PROCESSES)]
        try:
            for worker in workers:
                worker.wait_ready(60)
            time.sleep(1)  # let the startup sweeps pass
            # A worker thread opens its PostgreSQL connection and its model connection on its first task and keeps
            # them (CELERY_DB_REUSE_MAX, keep-alive): a round on the fresh workers first, so the timed round
            # measures workers as they run for days, not 32 connections opening in its first 0.3 s.
            _, _, warm_elapsed = extract_all(warm, warm_tag)
            print(f"warm-up round on the fresh workers: {len(warm)} extractions in {warm_elapsed:.2f} s = "
                  f"{len(warm) / warm_elapsed / (CONCURRENCY / LATENCY):.2f} of C/L (not judged)")
            # CPU over the timed window, per process kind (not timed; other users of PostgreSQL are not counted).
            cpu_before = {pid: cpu_seconds(pid) for pid in [os.getpid(), *(w.process.pid for w in workers),
                                                            *backend_pids()]}
            runs, sending, elapsed = extract_all(sessions, tag)
            used = {pid: cpu_seconds(pid) - cpu_before.get(pid, 0.0) for pid in [os.getpid(), *backend_pids()]}
            used.update({w.process.pid: cpu_seconds(w.process.pid) - cpu_before[w.process.pid] for w in workers})
        finally:
            for worker in workers:
                worker.stop()
        statuses = {}
        for status in ExtractionRun.objects.filter(pk__in=runs).values_list("status", flat=True):
            statuses[status] = statuses.get(status, 0) + 1
        finished = list(ExtractionRun.objects.filter(pk__in=runs).values_list("started_at", "finished_at",
                                                                               "latency_ms"))
        durations = sorted((f - s).total_seconds() for s, f, _ in finished)
        latencies = sorted(ms / 1000 for _, _, ms in finished)
        print(f"per run: median {durations[len(durations) // 2]:.2f} s claimed-to-finished "
              f"(model call {latencies[len(latencies) // 2]:.2f} s), slowest {durations[-1]:.2f} s")
        first = min(s for s, _, _ in finished)
        spans = [((s - first).total_seconds(), (f - first).total_seconds()) for s, f, _ in finished]
        end = max(f for _, f in spans)
        samples = [sum(a <= t / 20 < b for a, b in spans) for t in range(int(end * 20))]
        print(f"runs in flight: mean {sum(samples) / max(len(samples), 1):.1f}, max {max(samples, default=0)} "
              f"over {end:.2f} s from the first claim")
        worker_cpu = sum(used[w.process.pid] for w in workers)
        bench_cpu = used.pop(os.getpid())
        database_cpu = sum(used.values()) - worker_cpu
        print(f"CPU per run over the timed window: workers {1000 * worker_cpu / len(runs):.1f} ms, PostgreSQL "
              f"{1000 * database_cpu / len(runs):.1f} ms, this process (fake model, sending, polling) "
              f"{1000 * bench_cpu / len(runs):.1f} ms; load average {os.getloadavg()[0]:.2f}")
        limit = CONCURRENCY / LATENCY
        rate = len(runs) / elapsed
        print(f"{len(runs)} extractions, C={CONCURRENCY} ({PROCESSES} worker processes, threads pool), L={LATENCY} s: "
              f"{elapsed:.2f} s from the first send (sending all took {sending:.2f} s), runs {statuses}")
        print(f"throughput {rate:.1f}/s against the limit C/L = {limit:.0f}/s: {rate / limit:.2f} "
              f"(target >= 0.8: {'met' if rate / limit >= 0.8 else 'NOT met'}); model requests {len(fake.requests)}",
              flush=True)
        SessionContext.objects.filter(session_id__startswith=prefix).delete()


if __name__ == "__main__":
    main()
