"""The session page's line with the tokens and cost of all the session's runs (#19)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.utils import timezone

from contexts import services
from contexts.models import ExtractionRun
from contexts.services import Actor
from tests.factories import make_session
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


def _run(session, tokens_in: int, tokens_out: int, cost: str | None):
    ExtractionRun.objects.create(session=session, status="succeeded", model="gpt-4o-mini", prompt_tokens=tokens_in,
                                 completion_tokens=tokens_out, cost_usd=None if cost is None else Decimal(cost),
                                 finished_at=timezone.now())


def _usage_line(html: str) -> str:
    return re.search(r"<p [^>]*data-usage>(.*?)</p>", html, re.S).group(1)


def test_the_runs_card_shows_the_sessions_tokens_and_cost(support):
    session = make_session("cost-1")
    _run(session, 321, 45, "0.00007515")
    _run(session, 1000, 200, None)

    html = support.get("/sessions/cost-1/").content.decode()

    assert _usage_line(html) == ("All runs: 1566 tokens (1321 prompt + 245 completion) · $0.000075 · 1 run of a model "
                                 "without a price not counted")


def test_a_session_without_runs_shows_no_usage_line(support):
    make_session("cost-empty")
    assert "data-usage" not in support.get("/sessions/cost-empty/").content.decode()


def test_the_live_check_after_a_run_shows_the_new_totals(support):
    session = make_session("cost-2", content={"summary": "start"})
    _run(session, 100, 10, "0.00002100")
    page = support.get("/sessions/cost-2/").content.decode()
    since = re.search(r'/sessions/cost-2/live/\?since=([^"]+)"', page).group(1)
    assert "110 tokens" in _usage_line(page)

    # A model-driven update: a new version and a new run.
    services.snapshot_update(session=session, expected_version=session.version, source="api",
                             actor=Actor.system("agent"), changes={"summary": "later"})
    _run(session, 1000, 100, "0.00021000")
    update = support.get(f"/sessions/cost-2/live/?since={since}", **HTMX).content.decode()

    runs = update.split('id="runs"', 1)[1]
    assert _usage_line(runs) == "All runs: 1210 tokens (1100 prompt + 110 completion) · $0.000231"


def test_a_run_stopped_by_the_budget_says_so_on_the_page(support):
    session = make_session("cost-3")
    ExtractionRun.objects.create(session=session, status="budget_exceeded", finished_at=timezone.now(),
                                 error="Today's token budget is spent: 300 of 300 tokens.")
    html = support.get("/sessions/cost-3/").content.decode()
    assert '<span class="badge badge-run-budget_exceeded">Budget exceeded</span>' in html
    assert "Today&#x27;s token budget is spent: 300 of 300 tokens" in html
