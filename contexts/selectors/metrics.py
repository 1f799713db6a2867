"""What /metrics reports from the database, read at scrape time: the same answer from every process."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, F, Min, Q, Sum
from django.utils import timezone

from ..models import ExtractionRun, SessionContext, Status, WebhookDelivery, WebhookEndpoint

# Run latency buckets, in seconds (an offline run takes milliseconds, a model call seconds).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
UNFINISHED = (ExtractionRun.Status.QUEUED, ExtractionRun.Status.RUNNING)


@dataclass
class OperationsFigures:
    # (status, extractor) -> runs
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    # extractor -> (cumulative counts per LATENCY_BUCKETS bucket, count, sum of seconds), finished runs
    latency: dict[str, tuple[list[int], int, float]] = field(default_factory=dict)
    # model -> (tokens in, tokens out)
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)
    queued: int = 0
    oldest_queued_seconds: float = 0.0
    handoffs_waiting: int = 0
    longest_handoff_wait_seconds: float = 0.0
    # outcome (pending, delivered, failed) -> deliveries
    webhook_deliveries: dict[str, int] = field(default_factory=dict)
    # How long the delivery longest due has waited for a webhook worker to attempt it (one being attempted, or
    # waiting for its next retry, is not due).
    webhook_oldest_due_seconds: float = 0.0
    # Retries: model calls beyond a run's first (retries and repairs), and deliveries of a run's task beyond its
    # first (a lost worker's run taken up again, a broker's redelivery).
    retries: dict[str, int] = field(default_factory=lambda: {"model_call": 0, "task_redelivery": 0})


def operations_figures() -> OperationsFigures:
    """A few aggregate queries (runs, sessions waiting, deliveries)."""
    figures = OperationsFigures()
    now = timezone.now()
    finished = ~Q(status__in=UNFINISHED)
    buckets = {f"le_{i}": Count("id", filter=finished & Q(latency_ms__lte=int(bound * 1000)))
               for i, bound in enumerate(LATENCY_BUCKETS)}
    rows = (ExtractionRun.objects.order_by().values("status", "extractor", "model")
            .annotate(n=Count("id"), tokens_in=Sum("prompt_tokens"), tokens_out=Sum("completion_tokens"),
                      finished_n=Count("id", filter=finished), latency_total=Sum("latency_ms", filter=finished),
                      model_retries=Sum(F("model_calls") - 1, filter=Q(model_calls__gt=1)),
                      redeliveries=Sum(F("attempts") - 1, filter=Q(attempts__gt=1)),
                      **buckets))
    for row in rows:
        figures.retries["model_call"] += row["model_retries"] or 0
        figures.retries["task_redelivery"] += row["redeliveries"] or 0
        key = (row["status"], row["extractor"])
        figures.runs[key] = figures.runs.get(key, 0) + row["n"]
        if row["model"]:
            tokens_in, tokens_out = figures.tokens.get(row["model"], (0, 0))
            figures.tokens[row["model"]] = (tokens_in + (row["tokens_in"] or 0), tokens_out + (row["tokens_out"] or 0))
        if row["finished_n"]:
            counts, n, seconds = figures.latency.get(row["extractor"], ([0] * len(LATENCY_BUCKETS), 0, 0.0))
            counts = [c + row[f"le_{i}"] for i, c in enumerate(counts)]
            seconds += (row["latency_total"] or 0) / 1000
            figures.latency[row["extractor"]] = (counts, n + row["finished_n"], seconds)
    queued = ExtractionRun.objects.filter(status=ExtractionRun.Status.QUEUED).aggregate(n=Count("id"),
                                                                                        oldest=Min("created_at"))
    figures.queued = queued["n"]
    if queued["oldest"] is not None:
        figures.oldest_queued_seconds = max(0.0, (now - queued["oldest"]).total_seconds())
    waiting = SessionContext.objects.filter(status=Status.HANDOFF_REQUESTED).aggregate(
        n=Count("id"), oldest=Min("handoff_requested_at"))
    figures.handoffs_waiting = waiting["n"]
    if waiting["oldest"] is not None:
        figures.longest_handoff_wait_seconds = max(0.0, (now - waiting["oldest"]).total_seconds())
    figures.webhook_deliveries = dict(WebhookDelivery.objects.order_by().values_list("status")
                                      .annotate(n=Count("id")).values_list("status", "n"))
    oldest_due = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
        endpoint_id__in=WebhookEndpoint.objects.filter(is_active=True).values("pk"),
    ).aggregate(oldest=Min("next_attempt_at"))["oldest"]
    if oldest_due is not None:
        figures.webhook_oldest_due_seconds = max(0.0, (now - oldest_due).total_seconds())
    return figures
