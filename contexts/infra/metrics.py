"""/metrics: the Prometheus text format, for a scraper holding METRICS_TOKEN.

HTTP and database figures come from django-prometheus; ours are read from the database at scrape time
(contexts/selectors/metrics.py), so every web process answers the same and the Celery workers need no exporter
of their own: what a run did is in its record, whichever worker ran it. Under gunicorn with several workers,
set PROMETHEUS_MULTIPROC_DIR (an empty directory, emptied at each start) so that django-prometheus's counters
are summed over the workers (prometheus-client's multiprocess mode); see docs/operations.md.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ..selectors.metrics import LATENCY_BUCKETS, operations_figures

DATABASE_UP_HELP = "1 when the database answered this scrape's queries, else 0."


class OperationsCollector:
    """Our figures, from one set of aggregate queries per scrape."""

    def collect(self):
        try:
            figures = operations_figures()
        except (OperationalError, InterfaceError):
            # The scrape still answers, saying so: an alert on this tells a database outage from a dead process.
            yield GaugeMetricFamily("sessionctx_database_up", DATABASE_UP_HELP, value=0)
            return
        yield GaugeMetricFamily("sessionctx_database_up", DATABASE_UP_HELP, value=1)
        runs = CounterMetricFamily("sessionctx_extraction_runs", "Extraction runs by status and extractor "
                                   "(a run counts under its current status).", labels=["status", "extractor"])
        for (status, extractor), n in sorted(figures.runs.items()):
            runs.add_metric([status, extractor], n)
        yield runs
        latency = HistogramMetricFamily("sessionctx_extraction_run_latency_seconds",
                                        "Time a finished run spent extracting, by extractor.", labels=["extractor"])
        for extractor, (counts, n, seconds) in sorted(figures.latency.items()):
            buckets = [(str(bound), c) for bound, c in zip(LATENCY_BUCKETS, counts, strict=True)] + [("+Inf", n)]
            latency.add_metric([extractor], buckets, seconds)
        yield latency
        tokens = CounterMetricFamily("sessionctx_model_tokens", "Tokens sent to (in) and received from (out) "
                                     "the model, by model.", labels=["model", "direction"])
        for model, (tokens_in, tokens_out) in sorted(figures.tokens.items()):
            tokens.add_metric([model, "in"], tokens_in)
            tokens.add_metric([model, "out"], tokens_out)
        yield tokens
        yield GaugeMetricFamily("sessionctx_extraction_runs_queued", "Runs waiting for a worker.",
                                value=figures.queued)
        yield GaugeMetricFamily("sessionctx_extraction_oldest_queued_age_seconds",
                                "Age of the oldest run waiting for a worker (0 when none waits).",
                                value=figures.oldest_queued_seconds)
        yield GaugeMetricFamily("sessionctx_handoffs_waiting", "Sessions waiting for a person.",
                                value=figures.handoffs_waiting)
        yield GaugeMetricFamily("sessionctx_handoff_longest_wait_seconds",
                                "How long the longest-waiting session has waited for a person (0 when none waits).",
                                value=figures.longest_handoff_wait_seconds)
        deliveries = CounterMetricFamily("sessionctx_webhook_deliveries", "Webhook deliveries by outcome "
                                         "(pending, delivered, failed).", labels=["outcome"])
        for outcome, n in sorted(figures.webhook_deliveries.items()):
            deliveries.add_metric([outcome], n)
        yield deliveries
        retries = CounterMetricFamily("sessionctx_extraction_retries", "Retries: model calls beyond a run's first "
                                      "(kind model_call) and deliveries of a run's task beyond its first "
                                      "(kind task_redelivery).", labels=["kind"])
        for kind, n in sorted(figures.retries.items()):
            retries.add_metric([kind], n)
        yield retries


_operations = CollectorRegistry(auto_describe=False)
_operations.register(OperationsCollector())


def _process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every gunicorn worker's figures, from the files they write there; a fresh registry per scrape, as
        # prometheus-client's multiprocess mode requires.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404  # not switched on: as if it did not exist
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        response = HttpResponse("Authorization: Bearer <METRICS_TOKEN> required.\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.encode(), token.encode()):
        return HttpResponse("Wrong metrics token.\n", status=403, content_type="text/plain; charset=utf-8")
    body = generate_latest(_process_registry()) + generate_latest(_operations)
    response = HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
