"""The model endpoint goes down for a while: runs retry and then succeed; an outage longer than the
retry budget fails the run cleanly and the next update takes every message it missed."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from contexts.models import ExtractionRun, SessionContext
from tests.factories import make_api_key
from tests.fake_openai import FakeOpenAI, echo_extraction, error

pytestmark = pytest.mark.django_db(transaction=True)


class Outage:
    """The fake model answers 503 for `seconds` from the first request it gets, then extracts normally."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.until: float | None = None
        self.failed = 0

    def start(self, seconds: float) -> None:
        self.seconds, self.until = seconds, None

    def __call__(self, request):
        if self.until is None:
            self.until = time.monotonic() + self.seconds
        if time.monotonic() < self.until:
            self.failed += 1
            return error(503, "The model is overloaded")
        return echo_extraction(request)


@pytest.fixture
def model(settings):
    outage = Outage()
    with FakeOpenAI(default=outage) as fake:
        settings.SESSIONCTX_MODEL = "fake-model"
        settings.OPENAI_API_KEY = "test-key"
        settings.OPENAI_BASE_URL = fake.url
        settings.OPENAI_TIMEOUT = 5.0
        settings.OPENAI_MAX_RETRIES = 0
        # The retry budget, scaled down from production: 5 retries, backoff 0.5 s doubling up to 2 s
        # (with jitter at least 0.25 + 0.5 + 1 + 1 + 1 = 3.75 s of waiting).
        settings.SESSIONCTX_MODEL_RETRIES = 5
        settings.SESSIONCTX_RETRY_BACKOFF = 0.5
        settings.SESSIONCTX_RETRY_BACKOFF_MAX = 2.0
        yield fake, outage


@pytest.fixture
def agent():
    client = Client(HTTP_AUTHORIZATION=f"Bearer {make_api_key('read', 'write')[1]}")

    def post_turn(session_id: str, user: str, assistant: str) -> dict:
        response = client.post(f"/api/v1/sessions/{session_id}/messages", content_type="application/json",
                               data={"mode": "summary", "messages": [{"role": "user", "content": user},
                                                                     {"role": "assistant", "content": assistant}]})
        assert response.status_code == 202, response.content
        return response.json()

    return post_turn


def test_runs_retry_through_a_short_outage_and_then_succeed(model, agent):
    fake, outage = model
    outage.start(2.5)
    began = time.monotonic()

    answer = agent("outage-short", "My parcel 77 is late.", "Let me look into parcel 77.")

    run = ExtractionRun.objects.get(pk=answer["update"]["run_id"])
    session = SessionContext.objects.get(session_id="outage-short")
    assert run.status == "succeeded", run.error
    assert outage.failed >= 2 and run.model_calls == outage.failed + 1
    assert time.monotonic() - began >= 2.5  # it waited the outage out rather than giving up
    assert session.summary == "m1 m2" and session.cursor_seq == 2 and session.version == 1


def test_an_outage_longer_than_the_retry_budget_fails_cleanly_and_loses_no_message(model, agent, settings):
    fake, outage = model
    settings.SESSIONCTX_MODEL_RETRIES = 1
    settings.SESSIONCTX_RETRY_BACKOFF = 0.05
    outage.start(3600)

    answer = agent("outage-long", "Can you move my booking to Friday?", "Checking Friday for you.")

    run = ExtractionRun.objects.get(pk=answer["update"]["run_id"])
    session = SessionContext.objects.get(session_id="outage-long")
    assert run.status == "failed" and "503" in run.error
    # Nothing half-written: no error text as the summary, no new version, the cursor did not move.
    assert session.summary == "" and session.version == 0 and session.cursor_seq == 0

    outage.start(0)  # the model is back
    answer = agent("outage-long", "Friday at 10 then.", "Done: Friday 10:00.")

    run = ExtractionRun.objects.get(pk=answer["update"]["run_id"])
    session.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert session.summary == "m1 m2 m3 m4" and session.cursor_seq == 4 and session.version == 1
