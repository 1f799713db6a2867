"""Bounds on how long a web request waits on PostgreSQL, so a hung database costs a request a 503, not a thread.

Two bounds, both for web processes only (sessionctx/wsgi.py and asgi.py call `limit_web_database_waits()`):
PostgreSQL ends a statement after DB_STATEMENT_TIMEOUT, and a watchdog ends our wait on a server that does not
answer at all shortly after. Migrations, management commands, Celery tasks and tests run without either: their
long statements (a purge, an import, seeding) are legitimate, and they have their own limits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created

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
        self.seconds = seconds
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

    def renew(self, deadline: _Deadline) -> None:
        """Its whole length again from now, unless it has already passed. Later than before: the thread finds it
        not yet due when it wakes at the old time, and waits on."""
        with self._changed:
            if deadline in self._deadlines and not deadline.expired:
                deadline.at = time.monotonic() + deadline.seconds

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
    # A lock held by the parent's watchdog thread at fork time would stay held in the child forever.
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


def pause_between_queries(seconds: float) -> None:
    """Sleep between two queries of a request that waits on purpose (a long-poll of the event feed, a fresh read),
    then give its next queries this thread's whole database deadline again: the deadline bounds a wait on a
    database that does not answer, not how long a request may choose to wait for news (up to
    SESSIONCTX_EVENTS_MAX_WAIT or SESSIONCTX_FRESH_WAIT, well past DB_STATEMENT_TIMEOUT)."""
    time.sleep(seconds)
    renew_database_deadline()


def renew_database_deadline() -> None:
    """Give this thread's next queries its whole database deadline again, unless it has already passed: for a
    request that works in short steps of its own (pause_between_queries, an erasure's batches), so that the
    deadline bounds each step's wait on a database that does not answer rather than the request's length."""
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        _watchdog.renew(deadline)


def deadline_passed() -> bool:
    """Whether this thread is inside a database_deadline() block whose time is up."""
    deadline = getattr(_current, "deadline", None)
    return deadline is not None and deadline.expired


def _watch_new_connection(sender, connection, **kwargs) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and connection.vendor == "postgresql":
        deadline.watch(connection)


connection_created.connect(_watch_new_connection, dispatch_uid="contexts.infra.database.watch")

_request_deadline: float | None = None


def request_deadline() -> float | None:
    """How long a web request may wait on the database in this process; None outside web processes."""
    return _request_deadline


def _limit_statements(sender, connection, **kwargs) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # set_config, not SET: a utility statement takes no bound parameter.
            cursor.execute("SELECT set_config('statement_timeout', %s, false)",
                           [str(round(settings.DB_STATEMENT_TIMEOUT * 1000))])


def limit_web_database_waits() -> None:
    """Bound every PostgreSQL wait of this process's requests (DB_STATEMENT_TIMEOUT; 0 for none). For web processes.

    The timeout is set once per new connection (a round trip per connection, not per request, and none for a read
    the cache answers): a connection of a web process only ever serves requests and health checks."""
    global _request_deadline
    if settings.DB_STATEMENT_TIMEOUT <= 0:
        return
    _request_deadline = settings.DB_STATEMENT_TIMEOUT + DEADLINE_GRACE_SECONDS
    connection_created.connect(_limit_statements, dispatch_uid="contexts.infra.database.statement_timeout")
