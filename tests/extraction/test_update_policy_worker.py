"""Update policies with a real Celery worker (Redis broker, PostgreSQL, the fake model): a fresh read waits for
the worker's run, and celery beat's idle sweep gets a quiet conversation its update."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from contexts.models import ExtractionRun, SessionContext
from tests.extraction.test_worker import cluster, wait_until  # noqa: F401 - cluster is a fixture
from tests.factories import make_api_key

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TURN = [{"role": "user", "content": "Book the Lisbon flight for 12 May."},
        {"role": "assistant", "content": "Booked: TAP 1234 to Lisbon on 12 May."}]


def _client() -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {make_api_key('read', 'write')[1]}")


def test_a_fresh_read_waits_for_the_workers_run(cluster, settings):  # noqa: F811
    settings.SESSIONCTX_AUTO_UPDATE = True
    # The wait is what is tested, not its default bound: on a loaded 2-core machine a worker's first run has taken
    # longer than the default 10 s.
    settings.SESSIONCTX_FRESH_WAIT = 30
    fake, start = cluster
    start("fresh")
    client = _client()
    client.put("/api/v1/sessions/fresh-w", {"update_policy": "every_n_turns:5", "mode": "summary"},
               content_type="application/json")
    body = client.post("/api/v1/sessions/fresh-w/messages", {"messages": TURN}, content_type="application/json").json()
    assert body["update"] is None and not fake.requests
    response = client.get("/api/v1/sessions/fresh-w/context?fresh=true")
    assert response.status_code == 200 and response["X-Context-Fresh"] == "true", response.content
    assert response.json()["version"] == 1 and len(fake.requests) == 1
    run = ExtractionRun.objects.get(session__session_id="fresh-w")
    assert (run.trigger, run.status) == ("fresh", "succeeded")


def test_beat_sweeps_a_quiet_idle_conversation_into_one_update(cluster, settings):  # noqa: F811
    settings.SESSIONCTX_AUTO_UPDATE = True
    fake, start = cluster
    start("idle-worker")
    start("idle-beat", beat=True, SWEEP_INTERVAL="1")
    client = _client()
    client.put("/api/v1/sessions/idle-w", {"update_policy": "idle:2", "mode": "summary"},
               content_type="application/json")
    body = client.post("/api/v1/sessions/idle-w/messages", {"messages": TURN}, content_type="application/json").json()
    assert body["update"] is None
    run = wait_until(lambda: ExtractionRun.objects.filter(session__session_id="idle-w", status="succeeded").first(),
                     what="beat's idle sweep and the worker's run")
    assert run.trigger == "idle"
    session = SessionContext.objects.get(session_id="idle-w")
    assert session.cursor_seq == session.last_message_seq == 2
    # Quiet still, nothing unseen: no second call over the next sweeps.
    time.sleep(3)
    assert ExtractionRun.objects.filter(session__session_id="idle-w").count() == 1 and len(fake.requests) == 1
