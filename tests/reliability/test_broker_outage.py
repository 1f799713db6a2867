"""The broker goes down while agents post messages: messages are stored, the answer says the update is
pending, and once the broker is back the updates run and no message is lost.

A real Redis of our own (so stopping it disturbs nobody), a real gunicorn, a real Celery worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest
from django.db import connection

from contexts.models import ExtractionRun, Message, SessionContext
from tests.extraction.workers import Worker
from tests.factories import make_api_key
from tests.reliability.conftest import all_caught_up, call, wait_until
from tests.reliability.servers import ROOT, Gunicorn, RedisServer, subprocess_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(postgres_only):
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    broker = RedisServer().start()
    queue = f"sessionctx-broker-outage-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = subprocess_env(connection.settings_dict, CELERY_BROKER_URL=broker.url, CELERY_QUEUE=queue)
    worker = Worker("broker-outage", queue=queue, env=env)
    server = Gunicorn(env)
    try:
        worker.wait_ready()
        server.wait_ready()
        yield broker, server, env
    finally:
        server.stop()
        print(f"--- worker log (tail) ---\n{worker.output()[-3000:]}")
        worker.stop()
        broker.remove()


def turn(server, key, session_id: str, n: int) -> dict:
    status, _, body = call("POST", f"{server.url}/api/v1/sessions/{session_id}/messages", key=key, body={
        "mode": "summary",
        "messages": [{"role": "user", "content": f"Question {n}: where is order {n}?"},
                     {"role": "assistant", "content": f"Order {n} ships tomorrow."}],
    })
    assert status == 202, body
    return body


def test_messages_posted_while_the_broker_is_down_are_kept_and_extracted_once_it_is_back(stack):
    broker, server, env = stack
    _, key = make_api_key("read", "write")
    turn(server, key, "before", 1)
    wait_until(all_caught_up, what="the first update with the broker up")

    broker.kill()
    answers = [turn(server, key, sid, n) for n in (1, 2) for sid in ("down-a", "down-b")]

    assert all(len(a["stored"]) == 2 and a["update"]["status"] == "queued" for a in answers)
    assert Message.objects.filter(session__session_id__startswith="down-").count() == 8
    pending = ExtractionRun.objects.filter(session__session_id__startswith="down-")
    assert pending.count() == 2 and all(r.status == "queued" and r.enqueued_at is None for r in pending)

    broker.start()  # same port: the worker reconnects by itself
    sent = subprocess.run([sys.executable, "manage.py", "update_context", "--pending"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr

    wait_until(all_caught_up, what="the pending updates to run once the broker is back")
    for session in SessionContext.objects.filter(session_id__startswith="down-"):
        seqs = list(Message.objects.filter(session=session).values_list("seq", flat=True))
        assert seqs == [1, 2, 3, 4]  # every message stored once, none lost
        assert session.cursor_seq == 4 and "Order 2" in session.summary
        assert session.runs.filter(status="succeeded").count() >= 1
        assert not session.runs.exclude(status__in=["succeeded", "skipped"]).exists()
