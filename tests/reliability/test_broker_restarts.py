"""Redis (the broker) restarts again and again while agents post messages and a worker extracts: the worker
stays up, reconnects by itself every time, and every requested update ends done, skipped or taken over, with every
message in its session's snapshot. Over plain TCP (redis://) and over TLS (rediss://, as managed Redis services
offer it; fewer restarts, the same path).

A real Redis of our own (restarting it disturbs nobody), a real gunicorn, a real Celery worker, the real
openai client against the fake model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from contexts.models import ExtractionRun, Message, SessionContext
from tests.extraction.workers import Worker
from tests.factories import make_api_key
from tests.fake_openai import FakeOpenAI, echo_extraction
from tests.reliability.conftest import FINISHED, all_caught_up, call, wait_until
from tests.reliability.servers import ROOT, Gunicorn, RedisServer, subprocess_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

RESTARTS = {"redis": 10, "rediss": 4}
SESSIONS = [f"restarts-{n}" for n in range(6)]


@pytest.fixture(params=list(RESTARTS))
def stack(request, postgres_only):
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    broker = RedisServer(persistent=True, tls=request.param == "rediss").start()
    queue = f"sessionctx-broker-restarts-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with FakeOpenAI(default=lambda request: _slow(echo_extraction(request))) as fake:
        env = subprocess_env(
            connection.settings_dict, CELERY_BROKER_URL=broker.url, CELERY_QUEUE=queue,
            SESSIONCTX_MODEL="fake-model", OPENAI_API_KEY="test", OPENAI_BASE_URL=fake.url, OPENAI_MAX_RETRIES="0",
            OPENAI_TIMEOUT="4", SESSIONCTX_RETRY_BACKOFF="0.01",
            # A run sent before a restart whose message did not survive it is sent again this soon.
            SESSIONCTX_EXTRACTION_RESEND_AFTER="3",
        )
        worker = Worker("broker-restarts", queue=queue, env=env, concurrency=4)
        server = Gunicorn(env, threads=4)
        try:
            worker.wait_ready()
            server.wait_ready()
            yield broker, server, worker, env, RESTARTS[request.param]
        finally:
            if os.environ.get("ARTIFACTS_DIR"):  # whole logs, for a failure far from their tails
                name = f"broker-restarts-{request.param}"
                Path(os.environ["ARTIFACTS_DIR"], f"{name}-worker.log").write_text(worker.output())
                Path(os.environ["ARTIFACTS_DIR"], f"{name}-gunicorn.log").write_text(server.output())
            print(f"--- gunicorn log (tail) ---\n{server.output()[-3000:]}")
            print(f"--- worker log (tail) ---\n{worker.output()[-6000:]}")
            server.stop()
            worker.stop()
            broker.remove()


def _slow(reply):
    # The model takes a moment, so restarts catch tasks in flight (their acks go to a connection that is gone).
    reply.delay = 0.25
    return reply


def test_worker_survives_broker_restarts_under_load_and_every_update_finishes(stack):
    broker, server, worker, env, restarts = stack
    _, key = make_api_key("read", "write")
    stop = threading.Event()
    posted: dict[str, int] = dict.fromkeys(SESSIONS, 0)
    refused: list[str] = []

    def post_continuously(session_id: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            status, _, body = call("POST", f"{server.url}/api/v1/sessions/{session_id}/messages", key=key, body={
                "mode": "summary",
                "messages": [{"role": "user", "content": f"Question {n}: where is order {n}?"},
                             {"role": "assistant", "content": f"Order {n} ships tomorrow."}],
            })
            if status == 202:
                posted[session_id] += 2
            else:
                refused.append(f"{status} {body}")
            time.sleep(0.2)

    posters = [threading.Thread(target=post_continuously, args=(sid,), daemon=True) for sid in SESSIONS]
    for thread in posters:
        thread.start()
    try:
        for restart in range(restarts):
            wait_until(broker.has_consumer, timeout=20, what=f"the worker to consume again (before restart {restart})")
            time.sleep(1.0)  # up, under load: tasks queued, running, acknowledged
            broker.stop()
            time.sleep(0.5)  # down: posts are stored and their updates wait, unsent
            broker.start()
        wait_until(broker.has_consumer, timeout=20, what="the worker to consume again after the last restart")
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in posters:
            thread.join(30)

    assert worker.process.poll() is None, f"the worker exited:\n{worker.output()[-6000:]}"
    assert "Unrecoverable error" not in worker.output()
    assert not refused, refused[:3]
    # What beat's sweep does every SWEEP_INTERVAL for the runs asked for while the broker was down.
    sent = subprocess.run([sys.executable, "manage.py", "update_context", "--pending"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr

    wait_until(all_caught_up, timeout=40, what="every update to finish after the restarts")
    assert worker.process.poll() is None
    assert not ExtractionRun.objects.exclude(status__in=FINISHED).exists()
    # Only this test's worker did the runs (a process left over from another test, sweeping the same database
    # with other settings, once did some with the offline extractor).
    others = ExtractionRun.objects.exclude(extractor__in=["", "openai"])
    assert not others.exists(), list(others.values_list("session__session_id", "extractor", "status"))
    for session_id, count in posted.items():
        session = SessionContext.objects.get(session_id=session_id)
        assert count > 0 and Message.objects.filter(session=session).count() == count
        assert session.cursor_seq == session.last_message_seq == count
        # The fake model appends m<seq> for every message it was shown: each one reached the snapshot once.
        assert session.summary.split() == [f"m{seq}" for seq in range(1, count + 1)]

