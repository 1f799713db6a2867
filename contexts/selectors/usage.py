"""What model-driven updates cost: a run's price, a session's totals, the cost per day and the daily token budget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ..models import ExtractionRun, Project, SessionContext

MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.00000001")  # ExtractionRun.cost_usd's decimal places


def run_cost(*, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """USD for these tokens at SESSIONCTX_MODEL_PRICES; None when tokens were used by a model without a price."""
    if not prompt_tokens and not completion_tokens:
        return Decimal(0)
    price = settings.SESSIONCTX_MODEL_PRICES.get(model)
    if price is None:
        return None
    price_in, price_out = price
    return ((prompt_tokens * price_in + completion_tokens * price_out) / MILLION).quantize(COST_PLACES)


@dataclass(frozen=True)
class Usage:
    runs: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    unpriced_runs: int  # runs that used tokens of a model without a price: cost_usd leaves them out

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# Tokens and no cost: the model had no price (or the run finished before costs were kept). No tokens cost nothing.
UNPRICED = Q(cost_usd__isnull=True) & (Q(prompt_tokens__gt=0) | Q(completion_tokens__gt=0))


def session_usage(session: SessionContext) -> Usage:
    """Tokens and cost of the session's finished runs, all of them."""
    # Aliases differ from the columns: an aggregate may not share a name with a field its filter reads.
    totals = ExtractionRun.objects.filter(session=session, finished_at__isnull=False).aggregate(
        n=Count("id"), tokens_in=Sum("prompt_tokens", default=0), tokens_out=Sum("completion_tokens", default=0),
        cost=Sum("cost_usd", default=Decimal(0)), unpriced=Count("id", filter=UNPRICED))
    return Usage(runs=totals["n"], prompt_tokens=totals["tokens_in"], completion_tokens=totals["tokens_out"],
                 cost_usd=Decimal(totals["cost"]).quantize(COST_PLACES), unpriced_runs=totals["unpriced"])


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


def budget_day_start(now: datetime | None = None) -> datetime:
    """When the day of the daily token budget that holds `now` (default: now) began (TIME_ZONE, UTC by default)."""
    return _day_start(timezone.localdate(now, timezone=timezone.get_default_timezone()))


def tokens_today(*, project: Project | int | None = None) -> int:
    """Input and output tokens of every run (of the project's sessions, if given) that finished today (TIME_ZONE,
    UTC by default)."""
    runs = ExtractionRun.objects.filter(finished_at__gte=budget_day_start())
    if project is not None:
        runs = runs.filter(session__project=project)
    totals = runs.aggregate(
        tokens=Sum("prompt_tokens", default=0) + Sum("completion_tokens", default=0))
    return totals["tokens"]


def daily_token_budget(project: Project) -> int:
    """The project's tokens per day: its own budget, else SESSIONCTX_DAILY_TOKEN_BUDGET (each project counted
    apart); 0: no budget."""
    if project.daily_token_budget is not None:
        return project.daily_token_budget
    return settings.SESSIONCTX_DAILY_TOKEN_BUDGET


def budget_spent(*, session_pk: int) -> str | None:
    """Why a run of this session may not call the model now (today's tokens of its project reached the
    project's daily budget), or None."""
    project = Project.objects.filter(sessions__pk=session_pk).first()
    if project is None:
        return None
    budget = daily_token_budget(project)
    if budget <= 0:
        return None
    used = tokens_today(project=project)
    if used < budget:
        return None
    source = "its daily token budget" if project.daily_token_budget is not None else "SESSIONCTX_DAILY_TOKEN_BUDGET"
    return (f"Today's token budget of project {project.slug} is spent: {used:,} of {budget:,} tokens ({source}). "
            "The model was not called; the messages stay unseen for the next update after midnight UTC.")


def cost_per_day(*, days: int = 30, projects: QuerySet[Project] | None = None) -> list[dict]:
    """The last `days` days with runs, a row per day and project (of `projects`, else every one), newest day
    first, projects by slug: day, project (slug), runs, prompt_tokens, completion_tokens, cost (USD, None when no
    run of the day had a price) and unpriced_runs."""
    since = _day_start(timezone.localdate(timezone=timezone.get_default_timezone()) - timedelta(days=days - 1))
    runs = ExtractionRun.objects.filter(finished_at__gte=since)
    if projects is not None:
        runs = runs.filter(session__project__in=projects.values("pk"))
    rows = (runs.annotate(day=TruncDate("finished_at", tzinfo=timezone.get_default_timezone()))
            .values("day", "session__project__slug").order_by("-day", "session__project__slug")
            .annotate(n=Count("id"), tokens_in=Sum("prompt_tokens"), tokens_out=Sum("completion_tokens"),
                      cost=Sum("cost_usd"), unpriced=Count("id", filter=UNPRICED)))
    return [{"day": row["day"], "project": row["session__project__slug"], "runs": row["n"],
             "prompt_tokens": row["tokens_in"], "completion_tokens": row["tokens_out"], "cost": row["cost"],
             "unpriced_runs": row["unpriced"]}
            for row in rows]
