"""A database that drops out answers a clean 503, never a 500 page or a hung request."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.backends.signals import connection_created
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
# Past the server's statement timeout, so that a slow statement is ended by the server (which keeps the connection)
# and only a server that does not answer at all is cut off here.
DEADLINE_GRACE_SECONDS = 0.5


class _Deadline:
    """The PostgreSQL sockets one thread uses until a moment; past it they are shut down.

    A hung server whose kernel still acknowledges our bytes trips neither the statement timeout (the server never
    reads the query) nor TCP keepalives or the user timeout, and libpq has no read timeout of its own. Shutting the
    socket down wakes the waiting call with an OperationalError, whatever it was (query, commit, health check).
    """

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, db_connection) -> None:
        """Watch an open connection's socket (a duplicate, so a descriptor number reused later is never touched)."""
        try:
            sock = socket.socket(fileno=os.dup(db_connection.connection.fileno()))
        except Exception:  # closed or broken: nothing to wait on
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut_down(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut_down(sock)

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process that expires deadlines when they pass (a timer thread per request would cost more)."""

    def __init__(self) -> None:
        self._deadlines: set[_Deadline] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at: float | None = None

    def add(self, deadline: _Deadline) -> None:
        with self._changed:
            self._deadlines.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="database-deadline", daemon=True)
                self._thread.start()
            elif self._wakes_at is None or deadline.at < self._wakes_at:
                self._changed.notify()

    def discard(self, deadline: _Deadline) -> None:
        with self._changed:
            self._deadlines.discard(deadline)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for deadline in [d for d in self._deadlines if d.at <= now]:
                    self._deadlines.discard(deadline)
                    deadline.expire()
                self._wakes_at = min((d.at for d in self._deadlines), default=None)
                self._changed.wait(None if self._wakes_at is None else self._wakes_at - now)


_watchdog = _Watchdog()
_current = threading.local()


def _reset_after_fork() -> None:
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_reset_after_fork)


@contextlib.contextmanager
def database_deadline(seconds: float | None) -> Iterator[None]:
    """Within the block, a PostgreSQL call of this thread waits at most until `seconds` from now, then fails
    with OperationalError (connecting is bounded by DB_CONNECT_TIMEOUT instead). No bound for None or SQLite."""
    if seconds is None or connection.vendor != "postgresql":
        yield
        return
    deadline, outer = _Deadline(seconds), getattr(_current, "deadline", None)
    _current.deadline = deadline
    if connection.connection is not None:
        deadline.watch(connection)
    _watchdog.add(deadline)
    try:
        yield
    finally:
        _watchdog.discard(deadline)
        _current.deadline = outer
        deadline.close()


def _watch_new_connection(sender, connection, **kwargs) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and connection.vendor == "postgresql":
        deadline.watch(connection)


connection_created.connect(_watch_new_connection, dispatch_uid="contexts.infra.database_deadline")


class DatabaseUnavailableMiddleware:
    """Map a lost or refused database connection to 503 with the API's error shape.

    The broken connection is discarded when the request finishes (Django closes a connection whose
    query failed and that no longer answers), so the next request opens a fresh one. A database that does
    not answer at all costs a request DB_STATEMENT_TIMEOUT and a little more (plus DB_CONNECT_TIMEOUT when
    it then reconnects), never a thread.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.deadline = (settings.DB_STATEMENT_TIMEOUT + DEADLINE_GRACE_SECONDS
                         if settings.DB_STATEMENT_TIMEOUT > 0 else None)

    def __call__(self, request):
        with database_deadline(self.deadline):
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
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
