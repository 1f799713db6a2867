"""Figures counted in the process where they happen (prometheus-client), for /metrics (contexts/infra/metrics.py).

The rest of /metrics is read from the database at scrape time; these cannot be: one model call's latency and a read
cache lookup leave no row behind. Each process keeps its own; under gunicorn with several workers, and for Celery
workers on the same machine, PROMETHEUS_MULTIPROC_DIR (one directory shared by all of them) makes /metrics sum
them (docs/operations.md). Nothing here imports Django, so any module may count.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# One HTTP call to the model: a fast local model answers in a fraction of a second, a large one in a minute.
MODEL_CALL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

model_call_latency = Histogram(
    "sessionctx_model_call_latency_seconds",
    "Time of one HTTP call to the model (the repair call and retries are calls too), by model and outcome "
    "(ok: an answer came back; error: the call failed, timed out or was refused).",
    ["model", "outcome"], buckets=MODEL_CALL_BUCKETS,
)

read_cache_lookups = Counter(
    "sessionctx_read_cache_lookups",
    "Read-path cache lookups (context answers and API keys) by result: hit, miss (read from the database), "
    "unavailable (Redis did not answer or is being left alone after a failure: read from the database).",
    ["cache", "result"],
)
