"""The admin's cost per day (#19, #16): runs, tokens and cost, a row per day and project, of the projects the person
sees; each project's tokens today against its budget."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from contexts import services
from contexts.models import ExtractionRun, Project
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

URL = "/admin/contexts/extractionrun/cost-per-day/"


def _run(session, *, days_ago: int, tokens_in: int, tokens_out: int, cost: str | None):
    ExtractionRun.objects.create(session=session, status="succeeded", model="gpt-4o-mini", prompt_tokens=tokens_in,
                                 completion_tokens=tokens_out, cost_usd=None if cost is None else Decimal(cost),
                                 finished_at=timezone.now() - timedelta(days=days_ago))


def _rows(html: str) -> list[list[str]]:
    body = html.split('id="cost-per-day"', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
    return [[re.sub(r"\s+", " ", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def _table(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
    return [[re.sub(r"\s+", " ", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_cost_per_day_sums_runs_by_day_and_project_newest_first(superuser, settings):
    settings.SESSIONCTX_DAILY_TOKEN_BUDGET = 5000
    settings.SESSIONCTX_MODEL_PRICES = {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.60"))}
    other, _ = services.project_get_or_create(slug="other")
    Project.objects.filter(pk=other.pk).update(daily_token_budget=100)
    a, b, c = make_session("cpd-a"), make_session("cpd-b"), make_session("cpd-c", project=other)
    _run(a, days_ago=0, tokens_in=1000, tokens_out=100, cost="0.00021000")
    _run(b, days_ago=0, tokens_in=2000, tokens_out=200, cost="0.00042000")
    _run(c, days_ago=0, tokens_in=10, tokens_out=1, cost="0.00000100")
    _run(a, days_ago=1, tokens_in=500, tokens_out=50, cost=None)  # a model without a price
    _run(a, days_ago=40, tokens_in=9, tokens_out=9, cost="9")  # older than 30 days: not shown

    response = superuser.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    today, yesterday = timezone.now().date(), timezone.now().date() - timedelta(days=1)
    assert _rows(html) == [[f"{today:%Y-%m-%d}", "default", "2", "3000", "300", "0.000630", "0"],
                           [f"{today:%Y-%m-%d}", "other", "1", "10", "1", "0.000001", "0"],
                           [f"{yesterday:%Y-%m-%d}", "default", "1", "500", "50", "–", "1"]]
    assert _table(html, "tokens-today") == [["default", "3300", "5000 (SESSIONCTX_DAILY_TOKEN_BUDGET)"],
                                            ["other", "11", "100 (the project's own)"]]
    assert "gpt-4o-mini 0.15 / 0.60" in html
    # The runs list links to it and shows each run's cost.
    runs = superuser.get("/admin/contexts/extractionrun/").content.decode()
    assert f'href="{URL}"' in runs and "0.00021000" in runs


def test_a_member_of_one_project_sees_the_cost_of_that_project_alone(client, settings):
    other, _ = services.project_get_or_create(slug="other")
    _run(make_session("cpd-a"), days_ago=0, tokens_in=1000, tokens_out=100, cost="0.00021000")
    _run(make_session("cpd-c", project=other), days_ago=0, tokens_in=7, tokens_out=7, cost="0.00000700")
    staff = make_user("olga", role="support", project=other)
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    client.force_login(staff)

    html = client.get(URL).content.decode()

    assert _rows(html) == [[f"{timezone.now().date():%Y-%m-%d}", "other", "1", "7", "7", "0.000007", "0"]]
    assert [row[0] for row in _table(html, "tokens-today")] == ["other"]


def test_cost_per_day_needs_a_staff_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
