"""What the processes tell about themselves: metrics, logs and error reports (Sentry)."""

from __future__ import annotations

import logging
import os

from django.core.exceptions import ImproperlyConfigured

from .env import env, env_float, env_int, env_secret

__all__ = [
    "METRICS_TOKEN", "WORKER_METRICS_PORT", "WORKER_METRICS_ADDRESS", "LOG_FORMAT", "LOG_LEVEL", "LOGGING",
    "SENTRY_DSN",
]

# /metrics (Prometheus text format) answers only with `Authorization: Bearer <METRICS_TOKEN>`; 404 while unset.
METRICS_TOKEN = env_secret("METRICS_TOKEN")
# A Celery worker's own figures (the model call latency), on a port of its own (0: none), behind the same token.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)  # 0: none
WORKER_METRICS_ADDRESS = env("WORKER_METRICS_ADDRESS", "127.0.0.1")
if WORKER_METRICS_PORT and not METRICS_TOKEN:
    raise ImproperlyConfigured("WORKER_METRICS_PORT needs METRICS_TOKEN (the port answers only with that token)")
# prometheus-client turns multiprocess mode on when the variable merely exists: an empty one (an env file's
# `PROMETHEUS_MULTIPROC_DIR=`) would write its files into the working directory while /metrics sums none of them.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == "":
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

# LOG_FORMAT=json: one JSON object a line (for a log collector); plain text otherwise. Both carry the request id.
LOG_FORMAT = env("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOG_LEVEL = env("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in logging.getLevelNamesMapping():
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "contexts.infra.requestid.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                             "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # The model client's HTTP library logs every request at INFO (Celery sets the workers' root logger to
    # INFO): a line per extraction that the run record already holds (model, latency, tokens, error).
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"},
                "httpx2": {"level": "WARNING"}},
}

# Optional error reports to Sentry, from web processes and workers alike (contexts/infra/sentry.py): off while
# SENTRY_DSN is unset. Events carry the request id as a tag, and no personal data, request bodies or local variables.
SENTRY_DSN = env_secret("SENTRY_DSN")
if SENTRY_DSN:
    from contexts.infra import sentry as _sentry

    try:
        _sentry.init(SENTRY_DSN, environment=env("SENTRY_ENVIRONMENT"), release=env("SENTRY_RELEASE"),
                     traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0))
    except ValueError as exc:  # sentry_sdk.utils.BadDsn
        raise ImproperlyConfigured(f"SENTRY_DSN is not a Sentry DSN ({type(exc).__name__}: {exc}); it looks like "
                                   "https://<key>@<host>/<project>") from None
