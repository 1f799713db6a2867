"""GET /api/v1/sessions/{id}/usage: a session's tokens and cost (#19)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from contexts.models import ExtractionRun
from tests.api.conftest import Agent, assert_error
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def _run(session, *, tokens_in: int, tokens_out: int, cost: str | None, finished: bool = True, status="succeeded"):
    return ExtractionRun.objects.create(session=session, status=status, model="gpt-4o-mini", prompt_tokens=tokens_in,
                                        completion_tokens=tokens_out,
                                        cost_usd=Decimal(cost) if cost is not None else None,
                                        finished_at=timezone.now() if finished else None)


def test_usage_sums_the_sessions_finished_runs_and_names_the_unpriced_ones(reader):
    session = make_session("use-1")
    _run(session, tokens_in=1000, tokens_out=200, cost="0.00027000")
    _run(session, tokens_in=500, tokens_out=100, cost="0.00013500", status="failed")
    _run(session, tokens_in=300, tokens_out=30, cost=None)  # a model without a price
    _run(session, tokens_in=0, tokens_out=0, cost="0", status="budget_exceeded")
    _run(session, tokens_in=0, tokens_out=0, cost=None, finished=False, status="queued")  # not finished: not counted
    _run(make_session("use-other"), tokens_in=9999, tokens_out=9999, cost="1.00000000")  # another session

    response = reader.get("/api/v1/sessions/use-1/usage")

    assert response.status_code == 200, response.content
    assert response.json() == {"session_id": "use-1", "runs": 4, "prompt_tokens": 1800, "completion_tokens": 330,
                               "total_tokens": 2130, "cost_usd": "0.00040500", "unpriced_runs": 1}


def test_usage_of_a_session_without_runs_is_zero(reader):
    make_session("use-empty")
    body = reader.get("/api/v1/sessions/use-empty/usage").json()
    assert (body["runs"], body["total_tokens"], body["cost_usd"], body["unpriced_runs"]) == (0, 0, "0.00000000", 0)


def test_usage_of_an_unknown_session_is_404_and_needs_a_key(reader):
    assert_error(reader.get("/api/v1/sessions/nope/usage"), 404)
    make_session("use-2")
    assert_error(Agent().get("/api/v1/sessions/use-2/usage"), 401)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/sessions/u-q/usage", "/api/v1/sessions/u-q/export",
                                  "/api/v1/users/someone/export"])
def test_a_query_parameter_these_reads_do_not_take_is_refused_not_ignored(agent, path):
    make_session("u-q")
    response = agent.get(f"{path}?limt=5")  # ignored, it read as if the caller's filter had been applied
    assert_error(response, 400)
    assert "limt" in response.json()["error"]["details"]["fields"]
    assert agent.get(f"{path}?format=json" if "users" not in path else path).status_code == 200
