"""/api/v1/health: for load balancers; no authentication, no data."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from ..exceptions import ApplicationError
from ..infra.database import database_deadline
from .http import ApiView
from .openapi import ERROR_DESCRIPTIONS
from .serializers import ErrorSerializer, HealthOutputSerializer

# Load balancers need an answer, not a hung probe: the database check runs in a thread of its own and the answer
# waits for it this long. One thread per process, so a hung database holds one thread, however many probes come.
DATABASE_CHECK_SECONDS = 1.0
_database_checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-database")


def _check_database() -> None:
    try:
        with database_deadline(DATABASE_CHECK_SECONDS), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # A connection per check: no request ever ends in this thread to close a kept one.
        connection.close()


def _check_broker() -> None:
    from sessionctx.celery import app

    with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)


class HealthApi(ApiView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(tags=["health"], operation_id="health", auth=[],
                   responses={200: HealthOutputSerializer, 503: OpenApiResponse(ErrorSerializer,
                                                                                description=ERROR_DESCRIPTIONS[503])},
                   description="For load balancers: the database (and the broker, when configured) answer. "
                               "No authentication, no data.")
    def get(self, request):
        checks: dict[str, str] = {}
        failed: dict[str, str] = {}
        check = _database_checker.submit(_check_database)
        try:
            check.result(timeout=DATABASE_CHECK_SECONDS)
            checks["database"] = "ok"
        except Exception as exc:  # any failure means "not healthy"; the type is enough for operators
            check.cancel()  # if still queued behind a check that hangs
            failed["database"] = type(exc).__name__
        if settings.CELERY_BROKER_URL:
            try:
                _check_broker()
                checks["broker"] = "ok"
            except Exception as exc:
                failed["broker"] = type(exc).__name__
        else:
            checks["broker"] = "not configured (tasks run in-process)"
        if failed:
            raise ApplicationError(f"Unreachable: {', '.join(sorted(failed))}.", code="unavailable", status=503,
                                   details={"failed": failed})
        return Response({"status": "ok", "checks": checks})
