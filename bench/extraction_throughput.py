"""Extractions per second with real Celery workers, against the limit C/L set by the model's latency.

200 sessions each get one extraction; the fake model answers after L = 0.5 s; the workers have a
total concurrency C = 32 (worker processes, threads pool). Target: throughput >= 0.8 x C/L. The workers first
take an untimed warm-up round of 2C extractions (its figure is printed too), so the timed round sees them with
their connections open, as they are after their first minutes in production.

    .venv/bin/python bench/extraction_throughput.py   (PostgreSQL: BENCH_DATABASE_URL; Redis: BENCH_REDIS_URL)
    .venv/bin/python bench/extraction_throughput.py --tree before=/tmp/sessionctx-before --tree after=. --rounds 10

With --tree NAME=PATH (repeatable) or --rounds, each measurement runs in a process of its own from that tree's
checkout (its code, its workers, its fake model, its database BENCH_DATABASE_URL_<name>), the trees alternating
round by round; the first tree is the baseline of the printed ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from extraction_common import DEFAULT_DATABASE_URL, bounded_model, setup_django

SESSIONS = int(os.environ.get("BENCH_SESSIONS", 200))
LATENCY = float(os.environ.get("BENCH_LATENCY", 0.5))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 32))
# Worker processes sharing C (threads pool each): one per core gets past one interpreter's GIL.
PROCESSES = int(os.environ.get("BENCH_WORKERS", 2))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RESULT = "RESULT "  # the line a measurement in its own process reports on


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


def tree_functions():
    """The tree's way to queue an extraction, and its Celery worker helper, wherever its layout keeps them.

    contexts.extraction.runs and tests.extraction.workers since the restructuring (9d79cb8 and after);
    contexts.services and tests.tasks.workers in an older tree measured side by side with --tree.
    """
    try:
        from contexts.extraction.runs import extraction_request
    except ImportError:
        from contexts.services import extraction_request
    try:
        from tests.extraction.workers import Worker
    except ImportError:
        from tests.tasks.workers import Worker
    return extraction_request, Worker


def measure() -> dict:
    """One warm-up round and one timed round on fresh workers; prints them and returns the figures."""
    from tests.fake_openai import FakeOpenAI

    queue = f"sessionctx-bench-{uuid.uuid4().hex[:8]}"
    with FakeOpenAI(default=bounded_model(delay=LATENCY)) as fake:
        env = {"SESSIONCTX_MODEL": "fake-model", "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": fake.url,
               "OPENAI_MAX_RETRIES": "0", "CELERY_BROKER_URL": REDIS_URL, "CELERY_QUEUE": queue}
        database_url = setup_django(env)
        from django.db import transaction

        from contexts import services
        from contexts.models import ExtractionRun, SessionContext

        extraction_request, Worker = tree_functions()

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
        warm_ratio = len(warm) / warm_elapsed / (CONCURRENCY / LATENCY)
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
        return {"ratio": rate / limit, "rate": rate, "elapsed": elapsed, "sending": sending, "warm_ratio": warm_ratio,
                "run_s": durations[len(durations) // 2], "model_s": latencies[len(latencies) // 2],
                "workers_ms": 1000 * worker_cpu / len(runs), "postgres_ms": 1000 * database_cpu / len(runs),
                "bench_ms": 1000 * bench_cpu / len(runs), "statuses": statuses, "load": os.getloadavg()[0]}


def side_by_side(trees: list[tuple[str, Path]], rounds: int) -> None:
    """`rounds` measurements of each tree, each in a process of its own from the tree's checkout, alternating."""
    base_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    results: dict[str, list[dict]] = {name: [] for name, _ in trees}
    print(f"extraction throughput, {SESSIONS} sessions, C={CONCURRENCY} ({PROCESSES} worker processes, threads "
          f"pool), L={LATENCY} s; {rounds} rounds, trees alternating; load average {os.getloadavg()[0]:.2f}")
    for name, path in trees:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=path, capture_output=True, text=True)
        print(f"tree {name}: {path} at {head.stdout.strip() or '?'}")
    for i in range(rounds):
        for name, path in trees if i % 2 == 0 else trees[::-1]:
            env = {**os.environ, "BENCH_TREE": str(path), "PYTHONPATH": str(path),
                   "BENCH_DATABASE_URL": f"{base_url}_{name}"}
            proc = subprocess.run([sys.executable, __file__, "--one"], cwd=path, env=env, capture_output=True,
                                  text=True)
            found = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
            if proc.returncode or not found:
                raise SystemExit(f"round {i + 1}, tree {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            one = json.loads(found[-1][len(RESULT):])
            results[name].append(one)
            print(f"round {i + 1:>2} {name:<8} {one['ratio']:.3f} of C/L ({one['rate']:.1f}/s, warm-up "
                  f"{one['warm_ratio']:.2f}); per run {one['run_s']:.2f} s claimed-to-finished; CPU per run: "
                  f"workers {one['workers_ms']:.1f} ms, PostgreSQL {one['postgres_ms']:.1f} ms, bench "
                  f"{one['bench_ms']:.1f} ms; runs {one['statuses']}; load {one['load']:.2f}", flush=True)
    print(f"\n{'tree':<8} {'median':>7} {'mean':>6} {'range':>12} {'>= 0.8':>7} {'med. run s':>10} "
          f"{'workers ms':>10} {'PG ms':>6} {'bench ms':>8} {'median / ' + trees[0][0]:>16}")
    base = statistics.median(r["ratio"] for r in results[trees[0][0]])
    for name, _ in trees:
        rows = results[name]
        ratios = [r["ratio"] for r in rows]
        median = statistics.median(ratios)

        def med(field: str, rows=rows) -> float:
            return statistics.median(r[field] for r in rows)

        print(f"{name:<8} {median:7.3f} {statistics.mean(ratios):6.3f} {min(ratios):5.3f}-{max(ratios):.3f} "
              f"{sum(r >= 0.8 for r in ratios):>3}/{len(ratios):<3} {med('run_s'):10.2f} {med('workers_ms'):10.1f} "
              f"{med('postgres_ms'):6.1f} {med('bench_ms'):8.1f} {median / base:16.3f}")
    print("(fraction of C/L; target >= 0.8; CPU per run over the timed window, medians over the rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", metavar="NAME=PATH",
                        help="a checkout to measure (repeatable; the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per tree, alternating")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one measurement, for side_by_side
    args = parser.parse_args()
    if args.one:
        print(RESULT + json.dumps(measure()), flush=True)
    elif not args.tree and args.rounds == 1:
        measure()
    else:
        trees = []
        for value in args.tree or [f"this={Path(__file__).resolve().parents[1]}"]:
            name, _, path = value.partition("=")
            if not name.isidentifier() or not (Path(path) / "manage.py").exists():
                raise SystemExit(f"--tree {value!r}: expected NAME=PATH of a checkout")
            trees.append((name, Path(path).resolve()))
        side_by_side(trees, args.rounds)


if __name__ == "__main__":
    main()
