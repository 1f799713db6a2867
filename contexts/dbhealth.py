"""Cheap health checks of reused database connections, for requests (middleware) and tasks (contexts.tasks)."""

from __future__ import annotations

import select
import time

from django.db import connections

# CONN_HEALTH_CHECKS costs a `SELECT 1` round trip on every request or task that reuses a connection: a third
# of the read path's queries (bench/read_path.py), one of an extraction's 13. A connection the server ended
# while it sat idle (restart, pg_terminate_backend, idle timeout) has the server's goodbye or EOF waiting on its
# socket, which a zero-timeout poll sees without a round trip. Connections idle for longer than this still get
# Django's full check, for the failures a socket does not show (a silent network drop).
SOCKET_CHECK_MAX_IDLE = 1.0


def health_check_by_socket() -> None:
    """Mark this thread's recently used, still open connections as checked; close those the server ended."""
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


def note_connections_used() -> None:
    """At the end of a request or task: when this thread's connections were last used."""
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            conn.sessionctx_used_at = now
