"""/api/v1/health: for load balancers; no authentication, no data."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from ..exceptions import ApplicationError
from .http import ApiView
from .openapi import ERROR_DESCRIPTIONS
from .serializers import ErrorSerializer, HealthOutputSerializer


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
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # any failure means "not healthy"; the type is enough for operators
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
