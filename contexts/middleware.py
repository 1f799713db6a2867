"""A database that drops out answers a clean 503, never a 500 page or a hung request."""

from __future__ import annotations

import logging
import select
import time

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class DatabaseUnavailableMiddleware:
    """Map a lost or refused database connection to 503 with the API's error shape.

    The broken connection is discarded when the request finishes (Django closes a connection whose
    query failed and that no longer answers), so the next request opens a fresh one.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        _health_check_by_socket()
        try:
            return self.get_response(request)
        finally:
            _note_connections_used()

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
        # A write may or may not have committed before the connection dropped: say how to retry safely.
        message = ("The database is unavailable. Retry shortly; writes with If-Match or idempotency keys "
                   "are safe to retry.")
        if request.path.startswith("/api/"):
            response = JsonResponse(
                {"error": {"code": "service_unavailable", "message": message, "details": {}}}, status=503
            )
        else:
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


# CONN_HEALTH_CHECKS costs a `SELECT 1` round trip on every request that reuses a connection: a third
# of the read path's queries (bench/read_path.py). A connection the server ended while it sat idle
# (restart, pg_terminate_backend, idle timeout) has the server's goodbye or EOF waiting on its socket,
# which a zero-timeout poll sees without a round trip. Connections idle for longer than this still get
# Django's full check, for the failures a socket does not show (a silent network drop).
SOCKET_CHECK_MAX_IDLE = 1.0


def _health_check_by_socket() -> None:
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if (conn.vendor != "postgresql" or conn.connection is None or not conn.health_check_enabled
                or conn.health_check_done or now - getattr(conn, "sessionctx_used_at", 0.0) > SOCKET_CHECK_MAX_IDLE):
            continue
        if _server_hung_up(conn.connection):
            conn.close()  # the next query connects afresh
        else:
            conn.health_check_done = True


def _server_hung_up(raw) -> bool:
    """True if the server has sent anything on an idle connection (it only does so to end it), or it is broken."""
    if raw.closed or raw.broken:
        return True
    try:
        poller = select.poll()
        poller.register(raw.pgconn.socket, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except Exception:  # a socket we cannot even poll: reconnect rather than guess
        return True


def _note_connections_used() -> None:
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            conn.sessionctx_used_at = now
