"""A database that drops out answers a clean 503, never a 500 page or a hung request."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from .database import database_deadline, request_deadline

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class DatabaseUnavailableMiddleware:
    """Map a lost or refused database connection to 503 with the API's error shape.

    The broken connection is discarded when the request finishes (Django closes a connection whose
    query failed and that no longer answers), so the next request opens a fresh one. A database that does
    not answer at all costs a request DB_STATEMENT_TIMEOUT and a little more (plus DB_CONNECT_TIMEOUT when
    it then reconnects), never a thread.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with database_deadline(request_deadline()):
            return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
        # A write may or may not have committed before the connection dropped: say how to retry safely.
        message = ("The database is unavailable. Retry shortly; writes with If-Match or idempotency keys "
                   "are safe to retry.")
        if request.path.startswith("/api/"):
            response = JsonResponse(
                {"error": {"code": "unavailable", "message": message, "details": {}}}, status=503
            )
        else:
            # A person at a page: no word of If-Match; rendered without the request, whose context would ask the
            # database again (who is signed in).
            response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
