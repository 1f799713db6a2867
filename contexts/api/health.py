"""/api/v1/health/live and /api/v1/health/ready (and /api/v1/health, as ready): for load balancers and
orchestrators; no authentication, no data."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from ..exceptions import ApplicationError
from ..infra.database import database_deadline
from .http import ApiView
from .openapi import ERROR_DESCRIPTIONS
from .serializers import ErrorSerializer, HealthLiveOutputSerializer, HealthOutputSerializer

# Probes need an answer, not a hung probe: each dependency is checked in a thread of its own, all at once, and the
# answer waits for them this long together. One thread per dependency and process, so a hung dependency holds one
# thread however many probes come (later probes find its check still busy and report it down at the deadline).
CHECK_SECONDS = 0.8
_checkers = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"health-{name}")
             for name in ("database", "cache", "broker")}
CACHE_KEY = "sessionctx:health"


def _check_database() -> str:
    try:
        with database_deadline(CHECK_SECONDS), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # A connection per check: no request ever ends in this thread to close a kept one.
        connection.close()
    return "ok"


def _check_cache() -> str:
    if not settings.CACHE_URL:
        return "ok (in-process)"
    # A write, not a read: a Redis that answers reads and refuses writes (a replica left read-only after a
    # failover, or out of memory under noeviction) cannot drop a changed session's cached answer, so reads would
    # serve the old one until it expires, and no key could be revoked. The client's own socket timeouts
    # (CACHE_SOCKET_TIMEOUT) end the check on a cache that does not answer.
    cache.set(CACHE_KEY, "1", timeout=60)
    return "ok"


def _check_broker() -> str:
    if not settings.CELERY_BROKER_URL:
        return "not configured (tasks run in-process)"
    from sessionctx.celery import app

    # Socket timeouts of its own: a broker that accepts and never answers frees this thread soon after the answer.
    options = {"socket_timeout": CHECK_SECONDS, "socket_connect_timeout": CHECK_SECONDS}
    with app.connection_for_write(url=settings.CELERY_BROKER_URL, connect_timeout=CHECK_SECONDS,
                                  transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_SECONDS)
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}
# A cache that does not answer slows nothing down and loses nothing (reads and writes go to PostgreSQL, see
# contexts/readcache/): reported, but the process stays ready.
REQUIRED = ("database", "broker")


def run_checks() -> tuple[dict[str, str], dict[str, str]]:
    """(passed, failed): each dependency's state, all checked at once within CHECK_SECONDS."""
    futures: dict[str, Future] = {name: _checkers[name].submit(check) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=max(0.0, CHECK_SECONDS - 0.01))
    passed: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name, future in futures.items():
        if not future.done():
            future.cancel()  # if still queued behind a check that hangs
            failed[name] = "TimeoutError"
        elif future.exception() is not None:  # any failure means "down"; the type is enough for operators
            failed[name] = type(future.exception()).__name__
        else:
            passed[name] = future.result()
    return passed, failed


class HealthLiveApi(ApiView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(tags=["health"], operation_id="health_live", auth=[], responses={200: HealthLiveOutputSerializer},
                   description="Liveness: the process answers. Checks no dependency, so a database or broker outage "
                               "never gets a healthy process restarted. No authentication, no data.")
    def get(self, request):
        return Response({"status": "ok"})


class HealthReadyApi(ApiView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(tags=["health"], operation_id="health_ready", auth=[],
                   responses={200: HealthOutputSerializer, 503: OpenApiResponse(ErrorSerializer,
                                                                                description=ERROR_DESCRIPTIONS[503])},
                   description="Readiness: the database and the broker (when configured) answer; the cache is "
                               "checked and reported, but its outage only slows reads. Each is checked with a "
                               "timeout under 1 s, and the answer comes within that, whatever hangs. "
                               "/api/v1/health answers the same. No authentication, no data.")
    def get(self, request):
        passed, failed = run_checks()
        checks = {**passed, **{name: f"down ({error})" for name, error in failed.items()}}
        required = {name: error for name, error in failed.items() if name in REQUIRED}
        if required:
            raise ApplicationError(f"Unreachable: {', '.join(sorted(required))}.", code="unavailable", status=503,
                                   details={"failed": required, "checks": checks})
        return Response({"status": "ok" if not failed else "degraded", "checks": checks})


class HealthApi(HealthReadyApi):
    @extend_schema(tags=["health"], operation_id="health", auth=[],
                   responses={200: HealthOutputSerializer, 503: OpenApiResponse(ErrorSerializer,
                                                                                description=ERROR_DESCRIPTIONS[503])},
                   description="The same as /api/v1/health/ready (kept for existing load balancer settings).")
    def get(self, request):
        return super().get(request)
