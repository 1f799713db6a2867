"""Cost per run and the daily token budget (#19), through the real openai client against the fake server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contexts import services
from contexts.models import ExtractionRun, Project
from contexts.selectors.usage import session_usage
from tests.extraction.conftest import post
from tests.factories import make_session
from tests.fake_openai import answer

pytestmark = pytest.mark.django_db


def _turn(session, n: int):
    post(session, ("user", f"Question {n}: how do I convert the exported posts to Markdown?"),
         ("assistant", f"Answer {n}: use wordpress-to-hugo-exporter, then check the front matter."))


def test_a_run_records_its_cost_from_its_tokens_and_the_models_price(fake_model, extract, settings):
    settings.SESSIONCTX_MODEL_PRICES = {"fake-model": (Decimal("0.15"), Decimal("0.60"))}
    session = make_session(mode="summary")
    _turn(session, 1)
    fake_model.push(answer({"summary": "Converting posts."}, prompt_tokens=321, completion_tokens=45))

    run = extract(session)

    assert run.status == ExtractionRun.Status.SUCCEEDED, run.error
    # 321 x 0.15 + 45 x 0.60 USD per million tokens
    assert run.cost_usd == Decimal("0.00007515")
    usage = session_usage(session)
    assert (usage.runs, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd) == (1, 321, 45,
                                                                                           Decimal("0.00007515"))


def test_a_model_without_a_price_records_no_cost_and_is_counted_as_unpriced(fake_model, extract, settings):
    settings.SESSIONCTX_MODEL_PRICES = {"another-model": (Decimal(1), Decimal(2))}
    session = make_session(mode="summary")
    _turn(session, 1)
    fake_model.push(answer({"summary": "Converting posts."}, prompt_tokens=100, completion_tokens=10))

    run = extract(session)

    assert run.status == ExtractionRun.Status.SUCCEEDED and run.cost_usd is None
    usage = session_usage(session)
    assert (usage.total_tokens, usage.cost_usd, usage.unpriced_runs) == (110, Decimal(0), 1)


def test_once_todays_tokens_reach_the_budget_the_next_run_ends_budget_exceeded_without_a_model_call(
        fake_model, extract, settings):
    settings.SESSIONCTX_DAILY_TOKEN_BUDGET = 300
    session = make_session(mode="summary")
    _turn(session, 1)
    fake_model.push(answer({"summary": "First turn."}, prompt_tokens=250, completion_tokens=50))
    first = extract(session)
    assert first.status == ExtractionRun.Status.SUCCEEDED, first.error
    assert session.cursor_seq == 2 and len(fake_model.requests) == 1

    _turn(session, 2)
    second = extract(session)

    assert second.status == "budget_exceeded", second.error
    assert "300 of 300 tokens" in second.error and "SESSIONCTX_DAILY_TOKEN_BUDGET" in second.error
    assert "project default" in second.error
    assert len(fake_model.requests) == 1  # the model was not called
    assert (second.prompt_tokens, second.completion_tokens, second.model_calls) == (0, 0, 0)
    # Nothing changed, and the new messages stay unseen for a later run.
    assert (session.summary, session.version, session.cursor_seq) == ("First turn.", 1, 2)

    settings.SESSIONCTX_DAILY_TOKEN_BUDGET = 1000  # a bigger budget (or the next day) lets the update through
    fake_model.push(answer({"summary": "Both turns."}))
    third = extract(session)
    assert third.status == ExtractionRun.Status.SUCCEEDED, third.error
    assert (session.summary, session.cursor_seq) == ("Both turns.", 4)
    assert "Question 2" in fake_model.prompts()[-1]


def test_yesterdays_tokens_do_not_count_against_todays_budget(fake_model, extract, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.SESSIONCTX_DAILY_TOKEN_BUDGET = 300
    session = make_session(mode="summary")
    ExtractionRun.objects.create(session=session, status="succeeded", prompt_tokens=5000, completion_tokens=500,
                                 finished_at=timezone.now() - timedelta(days=1))
    _turn(session, 1)
    fake_model.push(answer({"summary": "Today."}))

    run = extract(session)

    assert run.status == ExtractionRun.Status.SUCCEEDED, run.error


def test_each_project_has_its_own_budget_and_one_spent_does_not_stop_another(fake_model, extract, settings):
    settings.SESSIONCTX_DAILY_TOKEN_BUDGET = 0  # no installation-wide budget: only the project's own counts
    thrifty, _ = services.project_get_or_create(slug="thrifty")
    Project.objects.filter(pk=thrifty.pk).update(daily_token_budget=300)
    spender, _ = services.session_get_or_create(session_id="same-id", project=thrifty, mode="summary")
    other, _ = services.session_get_or_create(session_id="same-id", mode="summary")  # the default project
    _turn(spender, 1)
    fake_model.push(answer({"summary": "Thrifty first."}, prompt_tokens=250, completion_tokens=50))
    assert extract(spender).status == ExtractionRun.Status.SUCCEEDED

    _turn(spender, 2)
    stopped = extract(spender)
    _turn(other, 1)
    fake_model.push(answer({"summary": "The default project goes on."}, prompt_tokens=5000, completion_tokens=50))
    went_on = extract(other)

    assert stopped.status == "budget_exceeded", stopped.error
    assert "project thrifty" in stopped.error and "300 of 300 tokens" in stopped.error
    assert went_on.status == ExtractionRun.Status.SUCCEEDED, went_on.error
    assert other.summary == "The default project goes on." and spender.summary == "Thrifty first."
