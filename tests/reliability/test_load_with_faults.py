"""Load with faults: 50 agents post turns and read their context while a Celery worker is SIGKILLed and
restarted. Afterwards every message is stored once, every session's cursor is at its last message, each
message went into exactly one extraction, and revision versions are consecutive.

60 seconds of load, as the issue asks (RELIABILITY_LOAD_SECONDS to change it).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import connection
from django.db.models import F

from contexts.extraction.dispatch import send_pending
from contexts.models import ExtractionRun, Message, Revision, SessionContext
from tests.extraction.conftest import celery_broker
from tests.extraction.workers import Worker
from tests.factories import make_api_key
from tests.fake_openai import FakeOpenAI, echo_extraction
from tests.reliability.conftest import call
from tests.reliability.servers import Gunicorn, subprocess_env

pytestmark = [pytest.mark.heavy, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The read cache (and throttle) on a Redis database of its own: the broker's is REDIS_URL.
CACHE_URL = os.environ.get("TEST_CACHE_URL", "redis://127.0.0.1:6379/14")
AGENTS = 50
LOAD_SECONDS = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "60"))
MODEL_LATENCY = 0.15  # long enough that a SIGKILL usually lands mid-extraction


def slow_echo(request):
    return dataclasses.replace(echo_extraction(request), delay=MODEL_LATENCY)


@pytest.fixture
def cluster():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    queue = f"sessionctx-load-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    workers: list[Worker] = []
    with FakeOpenAI(default=slow_echo) as fake:
        env = subprocess_env(
            connection.settings_dict, CELERY_BROKER_URL=REDIS_URL, CELERY_QUEUE=queue,
            SESSIONCTX_MODEL="fake-model", OPENAI_API_KEY="test", OPENAI_BASE_URL=fake.url,
            OPENAI_MAX_RETRIES="0", OPENAI_TIMEOUT="4", SESSIONCTX_RETRY_BACKOFF="0.01",
            # Short limits so a killed worker's task comes back within seconds.
            CELERY_TASK_SOFT_TIME_LIMIT="6", CELERY_TASK_TIME_LIMIT="7", CELERY_VISIBILITY_TIMEOUT="8",
            CELERY_UNACKED_RESTORE_INTERVAL="1", CELERY_UNACKED_RESTORE_THROTTLE="1",
            API_THROTTLE_RATE="1000000/min", CACHE_URL=CACHE_URL,
        )
        redis.Redis.from_url(CACHE_URL).flushdb()

        def start_worker(name: str) -> Worker:
            worker = Worker(name, queue=queue, env=env, concurrency=2)
            workers.append(worker)
            worker.wait_ready()
            return worker

        server = Gunicorn(env, workers=3)
        try:
            server.wait_ready()
            yield server, start_worker, queue
        finally:
            server.stop()
            for worker in workers:
                print(f"--- worker {worker.name} log (tail) ---\n{worker.output()[-2000:]}")
                worker.stop()
            redis.Redis.from_url(REDIS_URL).delete(queue)


def test_fifty_agents_lose_nothing_while_a_worker_is_killed_and_restarted(cluster, settings):
    server, start_worker, queue = cluster
    steady = start_worker("steady")
    victim = start_worker("victim")
    _, key = make_api_key("read", "write")
    stop_at = time.monotonic() + LOAD_SECONDS
    turns: dict[str, int] = {}
    statuses: Counter = Counter()
    lost: list[str] = []
    lock = threading.Lock()

    def agent(i: int) -> None:
        sid, n = f"load-{i}", 0
        while time.monotonic() < stop_at:
            n += 1
            batch = {"mode": "summary", "messages": [
                {"role": "user", "content": f"Question {n} from agent {i}", "idempotency_key": f"{sid}-u{n}"},
                {"role": "assistant", "content": f"Answer {n} to agent {i}", "idempotency_key": f"{sid}-a{n}"},
            ]}
            for _attempt in range(10):  # an agent retries the same batch (same keys) until it is taken
                try:
                    status = call("POST", f"{server.url}/api/v1/sessions/{sid}/messages", key=key, body=batch)[0]
                except OSError:
                    status = "connection error"
                with lock:
                    statuses[f"POST {status}"] += 1
                if status == 202:
                    break
                time.sleep(0.2)
            else:
                lost.append(f"{sid} turn {n}")
            try:
                status = call("GET", f"{server.url}/api/v1/sessions/{sid}/context", key=key)[0]
            except OSError:
                status = "connection error"
            with lock:
                statuses[f"GET {status}"] += 1
        turns[sid] = n

    agents = [threading.Thread(target=agent, args=(i,)) for i in range(AGENTS)]
    for thread in agents:
        thread.start()
    time.sleep(LOAD_SECONDS / 3)
    victim.kill()
    time.sleep(3)
    start_worker("victim-restarted")
    for thread in agents:
        thread.join(LOAD_SECONDS + 120)

    assert not lost, lost
    assert all(key.endswith((" 202", " 200")) for key in statuses), statuses  # no 5xx, no refused connection
    assert len(turns) == AGENTS and sum(turns.values()) >= AGENTS

    def drained() -> bool:
        busy = ExtractionRun.objects.filter(status__in=["queued", "running"]).exists()
        behind = SessionContext.objects.exclude(cursor_seq=F("last_message_seq")).exists()
        return not busy and not behind

    # What celery beat does in production every SWEEP_INTERVAL (with SESSIONCTX_EXTRACTION_RESEND_AFTER, here
    # shortened as this test shortens every limit): send again a queued run whose broker message went down with
    # the killed worker. Only the database still knows such a run is queued; no worker ever hears of it again.
    # Sent to the workers' broker and queue: this process would otherwise run the task itself, eagerly.
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    deadline, resent = time.monotonic() + 90, 0
    with celery_broker(REDIS_URL):
        while not drained() and time.monotonic() < deadline:
            resent += send_pending(older_than=10)[0]
            time.sleep(1)
    assert steady.process.poll() is None

    runs = Counter(ExtractionRun.objects.values_list("status", flat=True))
    models = set(ExtractionRun.objects.filter(status="succeeded").values_list("model", flat=True))
    assert models == {"fake-model"}, f"succeeded runs by {models}: every extraction goes to the workers' model"
    for sid, n in turns.items():
        session = SessionContext.objects.get(session_id=sid)
        seqs = list(Message.objects.filter(session=session).values_list("seq", flat=True))
        keys = list(Message.objects.filter(session=session).values_list("idempotency_key", flat=True))
        assert seqs == list(range(1, 2 * n + 1)), f"{sid}: messages not stored exactly once"
        assert len(set(keys)) == len(keys) == 2 * n
        assert session.cursor_seq == session.last_message_seq == 2 * n, (sid, session.cursor_seq, runs)
        # The fake model appends m<seq> for every message it is shown: each one went into exactly one run.
        assert session.summary == " ".join(f"m{s}" for s in seqs), f"{sid}: {session.summary!r}"
        versions = list(Revision.objects.filter(session=session).order_by("version")
                        .values_list("version", flat=True))
        assert versions == list(range(1, session.version + 1)), f"{sid}: versions {versions}"
        # Written by the workers, read through the web processes' Redis cache: never an older answer.
        status, _, body = call("GET", f"{server.url}/api/v1/sessions/{sid}/context", key=key)
        assert status == 200 and body["version"] == session.version, (sid, body)
    print(f"{sum(turns.values())} turns by {AGENTS} agents in {LOAD_SECONDS:.0f} s; requests {dict(statuses)}; "
          f"runs {dict(runs)}; sent again by the sweep {resent}")
