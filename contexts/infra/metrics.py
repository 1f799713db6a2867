"""/metrics: the Prometheus text format, for a scraper holding METRICS_TOKEN.

HTTP and database figures come from django-prometheus. Ours are mostly read from the database at scrape time
(contexts/selectors/metrics.py), so every web process answers the same: what a run did is in its record, whichever
worker ran it. What leaves no row behind (a model call's latency, a read cache lookup) is counted in the process
where it happens (contexts/infra/instruments.py); a Celery worker serves its own on WORKER_METRICS_PORT
(serve_worker_metrics). Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (an empty directory,
emptied at each start) so that the in-process counters are summed over the workers (prometheus-client's
multiprocess mode); see docs/operations.md.
"""

from __future__ import annotations

import glob
import hmac
import os
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ..selectors.metrics import LATENCY_BUCKETS, operations_figures

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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
        yield GaugeMetricFamily("sessionctx_webhook_oldest_due_age_seconds",
                                "How long the delivery longest due has waited for a webhook worker (0 when none "
                                "waits).", value=figures.webhook_oldest_due_seconds)
        retries = CounterMetricFamily("sessionctx_extraction_retries", "Retries: model calls beyond a run's first "
                                      "(kind model_call) and deliveries of a run's task beyond its first "
                                      "(kind task_redelivery).", labels=["kind"])
        for kind, n in sorted(figures.retries.items()):
            retries.add_metric([kind], n)
        yield retries


_operations = CollectorRegistry(auto_describe=False)
_operations.register(OperationsCollector())


class WorkersCollector:
    """Every gunicorn worker's figures, from the files they write in `path`: prometheus-client's
    MultiProcessCollector, without the files still empty. A worker creates its file and sizes it a moment later
    (a worker killed in between leaves it empty for good), and one empty file made the whole scrape a 500
    (prometheus/client_python#1199): it holds no figures yet, so it is left out."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self):
        files = []
        for name in glob.glob(os.path.join(self.path, "*.db")):
            try:
                if os.path.getsize(name) > 0:
                    files.append(name)
            except OSError:  # removed since the listing (a worker's files are removed when it is replaced)
                continue
        return MultiProcessCollector.merge(files, accumulate=True)


def _process_registry() -> CollectorRegistry:
    if path := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A fresh registry per scrape, as prometheus-client's multiprocess mode requires.
        registry = CollectorRegistry()
        registry.register(WorkersCollector(path))
        return registry
    return REGISTRY


def _refusal(authorization: str) -> tuple[int, str] | None:
    """(status, text) when `authorization` is not `Bearer <METRICS_TOKEN>`, else None."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return 401, "Authorization: Bearer <METRICS_TOKEN> required.\n"
    if not hmac.compare_digest(given.encode(), settings.METRICS_TOKEN.encode()):
        return 403, "Wrong metrics token.\n"
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN:
        raise Http404  # not switched on: as if it did not exist
    refused = _refusal(request.headers.get("Authorization", ""))
    if refused:
        response = HttpResponse(refused[1], status=refused[0], content_type="text/plain; charset=utf-8")
        if refused[0] == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = generate_latest(_process_registry()) + generate_latest(_operations)
    response = HttpResponse(body, content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response


# --- Celery workers' own port ---------------------------------------------------------------------------------


_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _worker_app(environ, start_response):
    """What a worker counted itself (model call latency, its process figures), behind the same token as /metrics.
    The database figures are left to the web's /metrics, so that summing both never counts them twice."""
    if environ.get("PATH_INFO") != "/metrics":
        refused: tuple[int, str] | None = (404, "Not found: GET /metrics\n")
    else:
        refused = _refusal(environ.get("HTTP_AUTHORIZATION", ""))
    if refused:
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if refused[0] == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{refused[0]} {_REASONS[refused[0]]}", headers)
        return [refused[1].encode()]
    start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")])
    return [generate_latest(_process_registry())]


def serve_worker_metrics(address: str, port: int) -> WSGIServer:
    """Serve `GET /metrics` for this Celery worker (WORKER_METRICS_PORT) from a thread of its main process.

    With the prefork pool (the default) the figures are counted in the pool's processes, not this one: set
    PROMETHEUS_MULTIPROC_DIR for the worker too (a directory of its own), and this sums them."""
    server = make_server(address, port, _worker_app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
