"""The embedded default (no broker): a posted turn is answered at once, and the answer's run status is true."""

from __future__ import annotations

import json
import time

import pytest

from contexts.models import ExtractionRun, SessionContext
from tests.fake_openai import echo_extraction

TURN = [{"role": "user", "content": "I installed nginx and postgres."},
        {"role": "assistant", "content": "Good, next configure the firewall."}]


def _post(client, raw_key, session_id, messages=TURN):
    started = time.monotonic()
    response = client.post(f"/api/v1/sessions/{session_id}/messages", data=json.dumps({"messages": messages}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert response.status_code == 202, response.content
    return response.json(), time.monotonic() - started


def _finished(run_id, timeout=15.0) -> ExtractionRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ExtractionRun.objects.get(pk=run_id)
        if run.status not in ("queued", "running"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {run.status}")


@pytest.mark.django_db(transaction=True)
def test_a_posted_turn_is_answered_at_once_while_a_slow_model_works_in_a_thread(fake_model, settings, client,
                                                                                 write_key):
    settings.SESSIONCTX_INPROCESS_WORKERS = 2  # the embedded default's own setting
    fake_model.default = lambda request: (reply := echo_extraction(request), setattr(reply, "delay", 3.0))[0]
    _key, raw_key = write_key

    body, answered = _post(client, raw_key, "embedded-1")

    assert answered < 1.5, f"the post waited {answered:.2f} s for the model"
    assert body["update"]["status"] in ("queued", "running")
    run = _finished(body["update"]["run_id"])
    assert run.status == "succeeded", run.error
    assert SessionContext.objects.get(session_id="embedded-1").summary == "m1 m2"


@pytest.mark.django_db(transaction=True)
def test_two_turns_posted_at_once_never_run_the_model_twice_at_once_for_one_session(fake_model, settings, client,
                                                                                   write_key):
    settings.SESSIONCTX_INPROCESS_WORKERS = 2
    fake_model.default = lambda request: (reply := echo_extraction(request), setattr(reply, "delay", 0.5))[0]
    _key, raw_key = write_key

    first, _ = _post(client, raw_key, "embedded-2")
    second, _ = _post(client, raw_key, "embedded-2", [{"role": "user", "content": "Done, ufw is on."},
                                                       {"role": "assistant", "content": "Then deploy."}])
    for body in (first, second):
        _finished(body["update"]["run_id"])
    deadline = time.monotonic() + 10
    while (ExtractionRun.objects.filter(session__session_id="embedded-2", status__in=["queued", "running"]).exists()
           and time.monotonic() < deadline):
        time.sleep(0.05)

    assert fake_model.max_in_flight == 1
    session = SessionContext.objects.get(session_id="embedded-2")
    assert (session.summary, session.cursor_seq) == ("m1 m2 m3 m4", 4)


@pytest.mark.django_db(transaction=True)
def test_the_answer_never_says_queued_for_a_run_that_already_finished(fake_model, client, write_key):
    # No threads (SESSIONCTX_INPROCESS_WORKERS=0): the run is done by the time the post answers.
    _key, raw_key = write_key

    body, _ = _post(client, raw_key, "embedded-3")

    run = ExtractionRun.objects.get(pk=body["update"]["run_id"])
    assert run.status == "succeeded", run.error
    assert body["update"]["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_the_embedded_default_runs_the_periodic_sweeps_so_an_idle_session_is_updated(settings, client, write_key):
    from contexts.infra.inprocess import start_beat

    settings.SESSIONCTX_INPROCESS_WORKERS = 1
    settings.CELERY_BEAT_SCHEDULE = {
        "sweep-idle-updates": {"task": "contexts.sweep_idle_updates", "schedule": 0.2},
        "sweep-extractions": {"task": "contexts.sweep_extractions", "schedule": 0.2}}
    _key, raw_key = write_key
    response = client.put("/api/v1/sessions/embedded-idle", data=json.dumps({"update_policy": "idle:1"}),
                          content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert response.status_code == 201, response.content
    body, _ = _post(client, raw_key, "embedded-idle")
    assert body["update"] is None  # idle:1 waits for the conversation to go quiet

    assert start_beat() == ["contexts.sweep_idle_updates", "contexts.sweep_extractions"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        session = SessionContext.objects.get(session_id="embedded-idle")
        if session.cursor_seq == session.last_message_seq:
            break
        time.sleep(0.1)
    assert session.cursor_seq == session.last_message_seq == 2
    assert "nginx" in session.summary and ExtractionRun.objects.get(session=session).trigger == "idle"
