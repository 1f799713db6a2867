"""Cost and the daily token budget in a real Celery worker (Redis broker, PostgreSQL), priced from its own env."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contexts.models import ExtractionRun, SessionContext
from tests.extraction.test_worker import api, cluster, settled, wait_until  # noqa: F401 - fixtures

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_prices_its_runs_and_stops_calling_the_model_once_the_budget_is_spent(cluster, api):  # noqa: F811
    fake, start = cluster
    start("w-cost", SESSIONCTX_MODEL_PRICES='{"fake-model": [0.15, 0.60]}', SESSIONCTX_DAILY_TOKEN_BUDGET="1")

    api("w-cost", ("user", "Plan a trip to Oslo"), ("assistant", "1. Book flights\n2. Book a hotel"))
    wait_until(lambda: settled("w-cost", 2), what="the first update")
    first = ExtractionRun.objects.get(status="succeeded")
    assert first.prompt_tokens > 0 and first.completion_tokens == 17
    assert first.cost_usd == (first.prompt_tokens * Decimal("0.15") + 17 * Decimal("0.60")) / 1_000_000
    calls = len(fake.requests)

    api("w-cost", ("user", "Flights are booked"), ("assistant", "Great, next the hotel"))
    stopped = wait_until(lambda: ExtractionRun.objects.filter(status="budget_exceeded").first(),
                         what="a run that ends budget_exceeded")

    assert "SESSIONCTX_DAILY_TOKEN_BUDGET" in stopped.error and stopped.model_calls == 0
    assert len(fake.requests) == calls  # the model was not called
    session = SessionContext.objects.get(session_id="w-cost")
    assert (session.cursor_seq, session.last_message_seq) == (2, 4)  # the new messages stay unseen
