"""Per-session back-off after repeated failed runs (#18 §4): a session whose model keeps failing stops sending it
every unseen message on every turn, says so in its runs (API and staff page), and the sweep tries again when the
wait is over. Through the real openai client against the fake server configured to fail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import F
from django.test import Client

from contexts.extraction.backoff import backoff_of
from contexts.extraction.policy import idle_sweep
from contexts.models import ExtractionRun, SessionContext
from tests.api.conftest import Agent
from tests.extraction.conftest import post
from tests.factories import make_session, make_user
from tests.fake_openai import echo_extraction, error, parse_prompt
from tests.roles import ensure_roles

pytestmark = pytest.mark.django_db


@pytest.fixture
def failing_model(fake_model, settings):
    """The fake model answering 500 to everything; back-off after 2 failures, 60 s doubling up to 600 s."""
    settings.SESSIONCTX_MODEL_RETRIES = 0
    settings.SESSIONCTX_BACKOFF_AFTER_FAILURES = 2
    settings.SESSIONCTX_BACKOFF_BASE = 60
    settings.SESSIONCTX_BACKOFF_MAX = 600
    fake_model.default = lambda request: error(500, "model down")
    return fake_model


def _age_runs(session_id: str, seconds: float) -> None:
    """Let `seconds` pass for the session's runs (the wait is measured from the last failure)."""
    shift = timedelta(seconds=seconds)
    ExtractionRun.objects.filter(session__session_id=session_id).update(
        created_at=F("created_at") - shift, started_at=F("started_at") - shift, finished_at=F("finished_at") - shift)


def test_failing_model_is_backed_off_exponentially_and_the_sweep_tries_again_when_the_wait_is_over(
        failing_model, write_key, django_capture_on_commit_callbacks):
    agent = Agent(write_key[1])

    def turn(n):
        with django_capture_on_commit_callbacks(execute=True):
            response = agent.post("/api/v1/sessions/bo-1/messages", {"messages": [
                {"role": "user", "content": f"Step {n} is done: the nginx config for shop{n} is in place."},
                {"role": "assistant", "content": f"Great, step {n} noted."}]})
        assert response.status_code == 202, response.content
        return response.json()["update"]

    turn(1)
    turn(2)
    assert len(failing_model.requests) == 2  # two failures: the second starts the wait
    held = turn(3)
    assert held["status"] == "skipped"
    assert len(failing_model.requests) == 2  # the third turn's update did not go to the model

    runs = agent.get("/api/v1/sessions/bo-1/runs").json()["results"]
    assert [r["status"] for r in runs] == ["skipped", "failed", "failed"]
    assert runs[0]["id"] == held["run_id"] and runs[0]["model_calls"] == 0
    assert runs[0]["error"].startswith("Backing off: not run, as the last 2 runs failed in a row")
    assert "wait until" in runs[0]["error"] and "(60 s after the last failure" in runs[0]["error"]
    assert "Backing off: the last 2 runs failed in a row" in runs[1]["error"]  # on the failure that began it
    assert "Backing off" not in runs[2]["error"]

    # The staff page's run list says it too.
    ensure_roles()
    staff = Client()
    staff.force_login(make_user("eve-editor", role="editor"))
    page = staff.get("/sessions/bo-1/").content.decode()
    assert "Backing off: not run, as the last 2 runs failed in a row" in page

    assert idle_sweep() == 0  # still waiting
    _age_runs("bo-1", 61)
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_sweep() == 1  # the wait is over: one try
    assert idle_sweep() == 0
    assert len(failing_model.requests) == 3
    retry = ExtractionRun.objects.filter(session__session_id="bo-1").first()
    assert (retry.trigger, retry.status) == ("backoff", "failed")
    assert "the last 3 runs failed in a row" in retry.error and "(120 s after the last failure" in retry.error

    # The model is back: the next try, 120 s later, takes every message the failures and the wait left unseen.
    failing_model.default = echo_extraction
    _age_runs("bo-1", 61)
    assert idle_sweep() == 0
    _age_runs("bo-1", 60)
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_sweep() == 1
    _, shown = parse_prompt(failing_model.requests[-1])
    assert [seq for seq, _, _ in shown] == [1, 2, 3, 4, 5, 6]
    session = SessionContext.objects.get(session_id="bo-1")
    assert session.cursor_seq == 6 and session.summary == "m1 m2 m3 m4 m5 m6"
    assert backoff_of(session.pk) is None
    assert turn(4)["status"] == "queued"  # back to an update per turn
    assert ExtractionRun.objects.filter(session=session).first().status == "succeeded"


def test_the_wait_doubles_per_failure_up_to_the_cap_and_a_success_ends_it(failing_model):
    session = make_session("bo-2", mode="summary")
    for _ in range(8):
        ExtractionRun.objects.create(session=session, status="failed", trigger="auto", finished_at=session.updated_at)
    assert backoff_of(session.pk).seconds == 600  # 60 × 2^6 capped
    ExtractionRun.objects.filter(session=session).update(status="no_change")
    assert backoff_of(session.pk) is None  # an answer that changed nothing is an answer: no streak


def test_an_operator_can_run_an_update_during_the_wait(failing_model, django_capture_on_commit_callbacks):
    session = make_session("bo-3", mode="summary")
    post(session, ("user", "The DNS now points at the new box."), ("assistant", "Good."))
    for _ in range(2):
        ExtractionRun.objects.create(session=session, status="failed", trigger="auto", finished_at=session.updated_at)
    _age_runs("bo-3", 1)
    assert backoff_of(session.pk) is not None
    failing_model.default = echo_extraction

    call_command("update_context", "bo-3", "--sync", stdout=None)

    session.refresh_from_db()
    assert session.summary == "m1 m2" and len(failing_model.requests) == 1


def test_a_retry_after_the_wait_refused_for_a_spent_budget_is_made_the_next_day(
        settings, django_capture_on_commit_callbacks):
    from django.utils import timezone

    from contexts import services

    settings.SESSIONCTX_MODEL = ""  # the offline extractor: this is about when the sweep asks
    settings.SESSIONCTX_BACKOFF_AFTER_FAILURES = 2
    settings.SESSIONCTX_BACKOFF_BASE = 60
    settings.SESSIONCTX_DAILY_TOKEN_BUDGET = 1000
    session = make_session("bo-budget", mode="summary")
    services.messages_append(session=session, messages=[
        {"role": "user", "content": "We are moving the shop database from MySQL to PostgreSQL."},
        {"role": "assistant", "content": "Noted: MySQL to PostgreSQL."}])
    now = timezone.now()
    failed_at = now - timedelta(seconds=61)  # two failures in a row; their 60 s wait is over
    for _ in range(2):
        ExtractionRun.objects.create(session=session, status="failed", trigger="auto", finished_at=failed_at)
    ExtractionRun.objects.filter(session=session).update(created_at=failed_at)
    spent = ExtractionRun.objects.create(session=make_session("busy"), status="succeeded", prompt_tokens=5000,
                                         finished_at=now)

    with django_capture_on_commit_callbacks(execute=True):
        assert idle_sweep() == 1  # the wait is over, but today's budget is spent
    run = ExtractionRun.objects.filter(session=session).first()
    assert (run.trigger, run.status) == ("backoff", "budget_exceeded")
    assert "next update after midnight UTC" in run.error
    assert idle_sweep() == 0  # not asked again the same day

    # The next day the budget is fresh and the messages still unseen: the update the run promised comes.
    ExtractionRun.objects.filter(pk=spent.pk).update(finished_at=now - timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_sweep(now=now + timedelta(days=1)) == 1
    session.refresh_from_db()
    assert session.cursor_seq == session.last_message_seq == 2
