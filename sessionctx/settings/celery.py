"""Celery: the broker, task limits (they follow the model's timeout), redelivery, and the periodic sweeps."""

from __future__ import annotations

import math
import ssl

from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue
from kombu import transport as kombu_transport

from .env import env, env_float, env_int
from .sessionctx import OPENAI_TIMEOUT

__all__ = [
    "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "SESSIONCTX_INPROCESS_WORKERS", "CELERY_TASK_EAGER_PROPAGATES",
    "CELERY_RESULT_BACKEND", "CELERY_TASK_IGNORE_RESULT", "CELERY_TASK_SERIALIZER", "CELERY_RESULT_SERIALIZER",
    "CELERY_ACCEPT_CONTENT", "CELERY_TASK_DEFAULT_QUEUE", "CELERY_TASK_ACKS_LATE", "CELERY_TASK_REJECT_ON_WORKER_LOST",
    "CELERY_WORKER_PREFETCH_MULTIPLIER", "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP",
    "CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS", "CELERY_TASK_SOFT_TIME_LIMIT",
    "CELERY_TASK_TIME_LIMIT", "CELERY_BROKER_TRANSPORT_OPTIONS", "CELERY_WORKER_HIJACK_ROOT_LOGGER",
    "CELERY_DB_REUSE_MAX", "SWEEP_INTERVAL", "CELERY_BEAT_SCHEDULE", "SESSIONCTX_WEBHOOK_QUEUE", "CELERY_TASK_QUEUES",
]

CELERY_BROKER_URL = env("CELERY_BROKER_URL")
# A URL no transport takes passed start-up: every run was then queued and never sent (or the app failed to load far
# from here). Only the scheme is named: the URL may hold a password.
_scheme, _sep, _ = CELERY_BROKER_URL.partition("://")
# kombu reads "redis+socket://" (Redis on a Unix socket) as its redis transport: what precedes the "+" counts.
if CELERY_BROKER_URL and (not _sep or _scheme.split("+", 1)[0] not in kombu_transport.TRANSPORT_ALIASES):
    raise ImproperlyConfigured("CELERY_BROKER_URL must be a broker URL such as redis://host:6379/0"
                               + (f" ({_scheme[:20]!r} is no broker's scheme)" if _sep else ""))
# No broker: tasks run in-process (the embedded default), still after the transaction commits.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# There, this many threads of each process run the tasks, so a request never waits for the model (0: the request
# runs them itself after its commit, as the tests do).
SESSIONCTX_INPROCESS_WORKERS = env_int("SESSIONCTX_INPROCESS_WORKERS", 2)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "sessionctx")
# Webhook deliveries have a queue of their own, so a receiver that hangs holds the workers of that queue only and
# never delays an update. A worker started without -Q takes both queues; the Procfile and deploy/ run one worker for
# each (`-Q sessionctx` and `-Q sessionctx.webhooks`).
SESSIONCTX_WEBHOOK_QUEUE = env("CELERY_WEBHOOK_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}.webhooks")
if SESSIONCTX_WEBHOOK_QUEUE == CELERY_TASK_DEFAULT_QUEUE:
    raise ImproperlyConfigured("CELERY_WEBHOOK_QUEUE must differ from CELERY_QUEUE: a receiver that hangs would hold "
                               "the workers that update the snapshots")
# Each as Celery makes a queue it is only told the name of (an exchange of the same name, routed by it).
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name)
                      for name in (CELERY_TASK_DEFAULT_QUEUE, SESSIONCTX_WEBHOOK_QUEUE)]
# A task is acknowledged after it ran, so a killed worker's task is redelivered to another.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the broker connection is lost finishes its work (killing it would only redo it). Its ack
# cannot reach Redis any more: contexts/infra/broker.py makes that a logged connection error rather than one that
# stops the worker, and the message delivered again after the visibility timeout finds its run done.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
if CELERY_BROKER_URL and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT = "contexts.infra.broker:Transport"
    __all__ += ["CELERY_BROKER_TRANSPORT"]
if CELERY_BROKER_URL and CELERY_BROKER_URL.startswith("rediss://"):
    # Redis over TLS checks the server's certificate against the system's CAs (kombu alone would take any
    # certificate when the URL names no ssl_cert_reqs). The URL's own ssl_* options (ssl_ca_certs=/path/ca.pem for
    # a private CA) replace these.
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    __all__ += ["CELERY_BROKER_USE_SSL"]
# The model's timeout (OPENAI_TIMEOUT, sessionctx.py) sets the task limits (a slow local model gets a long
# OPENAI_TIMEOUT and longer tasks with it): an extraction needs room for an answer and its repair, each perhaps after
# one timed-out try. The extractor starts no call that could end past the soft limit, so a soft limit below one call
# would fail every run at once.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", max(240, math.ceil(4 * OPENAI_TIMEOUT) + 30))
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", CELERY_TASK_SOFT_TIME_LIMIT + 60)
if CELERY_TASK_SOFT_TIME_LIMIT <= OPENAI_TIMEOUT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_SOFT_TIME_LIMIT ({CELERY_TASK_SOFT_TIME_LIMIT} s) leaves no room for a model call of "
        f"OPENAI_TIMEOUT ({OPENAI_TIMEOUT:g} s): every run would fail at once. Leave it unset to follow "
        f"OPENAI_TIMEOUT, or set it to at least {math.ceil(4 * OPENAI_TIMEOUT) + 30} (an answer and its repair, each "
        "perhaps tried twice)")
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must be above CELERY_TASK_SOFT_TIME_LIMIT")
# A broker that takes the connection and never answers (behind a dead proxy, a stopped process) is given up on like
# a refused one: without a bound a publish, and the request that made it, waited for ever. Above the 1 s a worker's
# BRPOP waits for a task; 3 s, as a publish is tried twice (PUBLISH_RETRY_POLICY) and a request may publish a run
# and a few deliveries.
_broker_socket_timeout = env_float("CELERY_BROKER_SOCKET_TIMEOUT", 3.0, minimum=2.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis redelivers an unacknowledged task after this: above the hard limit plus backoff.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", max(900, CELERY_TASK_TIME_LIMIT + 120)),
    "socket_timeout": _broker_socket_timeout,
    "socket_connect_timeout": _broker_socket_timeout,
    # How often a worker looks for unacknowledged tasks past that timeout (a killed worker's).
    "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": env_int("CELERY_UNACKED_RESTORE_THROTTLE", 10),
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup otherwise closes the database connection before and after every task, so each
# extraction paid for a new PostgreSQL backend; contexts/tasks.py closes only broken or expired ones
# (CONN_MAX_AGE, health checks), as Django does around each request.
CELERY_DB_REUSE_MAX = 1_000_000

# The sweep is what gets a SIGKILLed worker's runs going again when no worker restarts, so it runs often (the README's
# takeover bound); a sweep message older than one interval is dropped, as the next one is on its way.
SWEEP_INTERVAL = env_int("SWEEP_INTERVAL", 10, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sweep-extractions": {"task": "contexts.sweep_extractions", "schedule": float(SWEEP_INTERVAL),
                          "options": {"expires": float(SWEEP_INTERVAL)}},
    # Sessions under an idle:S policy whose conversation has gone quiet get their update, and so do sessions
    # whose back-off after failed runs is over.
    "sweep-idle-updates": {"task": "contexts.sweep_idle_updates", "schedule": float(SWEEP_INTERVAL),
                           "options": {"expires": float(SWEEP_INTERVAL)}},
    "purge-events": {"task": "contexts.purge_events", "schedule": 3600.0},
    "purge-sessions": {"task": "contexts.purge_sessions", "schedule": 3600.0, "options": {"expires": 3600.0}},
    # Retries due later than a countdown should wait in the broker, and deliveries a dead worker or broker lost.
    "sweep-webhooks": {"task": "contexts.sweep_webhooks", "schedule": 30.0, "options": {"expires": 30.0}},
}
