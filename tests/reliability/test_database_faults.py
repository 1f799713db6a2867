"""PostgreSQL drops a connection mid-request: a clean 503 with the error shape, and the next request works."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import close_old_connections, connection, connections

from contexts.models import Revision, SessionContext
from tests.extraction.workers import database_url
from tests.factories import make_api_key, make_session
from tests.reliability.conftest import call

pytestmark = pytest.mark.usefixtures("postgres_only")


def _admin_connection() -> psycopg.Connection:
    return psycopg.connect(database_url(connection.settings_dict), autocommit=True)


def _wait_for_blocked_backend(admin: psycopg.Connection, locker_pid: int, timeout: float = 10) -> int:
    """The pid of the server's backend once it waits on our lock (so it is mid-request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND pid <> %s AND pid <> pg_backend_pid()", (locker_pid,)
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.02)
    raise AssertionError("the request never reached the database")


def _drop_mid_request(method: str, url: str, key: str, **kwargs) -> tuple[int, dict, dict]:
    """Send a request that blocks on a table lock, terminate its backend, return the answer."""
    answer: dict = {}
    with _admin_connection() as admin, _admin_connection() as locker:
        locker.autocommit = False
        locker.execute("LOCK TABLE contexts_sessioncontext IN ACCESS EXCLUSIVE MODE")
        request = threading.Thread(target=lambda: answer.setdefault("r", call(method, url, key=key, **kwargs)))
        request.start()
        try:
            backend = _wait_for_blocked_backend(admin, locker.info.backend_pid)
            assert admin.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]
        finally:
            request.join(20)
            locker.rollback()
    return answer["r"]


def test_a_read_whose_connection_is_dropped_answers_503_and_the_next_read_works(gunicorn):
    make_session("fault-read", mode="planning", content={"summary": "Renewing a passport", "plan": ["Form"]})
    make_session("fault-warm")
    _, key = make_api_key("read")
    url = f"{gunicorn.url}/api/v1/sessions/fault-read/context"
    # The worker now holds a persistent connection; another session, so that (with CACHE_URL set) this one's
    # read is not answered from the read cache but goes to the database.
    assert call("GET", f"{gunicorn.url}/api/v1/sessions/fault-warm/context", key=key)[0] == 200

    status, headers, body = _drop_mid_request("GET", url, key)

    assert status == 503, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "unavailable" and headers["Retry-After"] == "1"
    status, _, body = call("GET", url, key=key)
    assert status == 200 and body["summary"] == "Renewing a passport" and body["version"] == 1


def test_a_write_whose_connection_is_dropped_changes_nothing_and_can_be_retried(gunicorn):
    session = make_session("fault-write", mode="planning", content={"summary": "Before"})
    _, key = make_api_key("read", "write")
    url = f"{gunicorn.url}/api/v1/sessions/fault-write/context"
    assert call("GET", url, key=key)[0] == 200

    status, _, body = _drop_mid_request("PATCH", url, key, body={"summary": "After"}, headers={"If-Match": '"1"'})

    assert status == 503 and body["error"]["code"] == "unavailable"
    session.refresh_from_db()
    assert session.summary == "Before" and session.version == 1
    assert Revision.objects.filter(session=session).count() == 1
    status, _, body = call("PATCH", url, key=key, body={"summary": "After"}, headers={"If-Match": '"1"'})
    assert status == 200 and body["summary"] == "After" and body["version"] == 2
    assert list(Revision.objects.filter(session=session).values_list("version", flat=True)) == [2, 1]


def test_an_idle_connection_killed_between_requests_is_replaced_without_an_error(gunicorn):
    make_session("fault-idle", mode="summary", content={"summary": "Still here"})
    _, key = make_api_key("read")
    url = f"{gunicorn.url}/api/v1/sessions/fault-idle/context"
    assert call("GET", url, key=key)[0] == 200
    with _admin_connection() as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state = 'idle' AND application_name NOT LIKE 'pytest%%' "
            "AND pid <> ALL(%s)", ([_own_backend_pid()],)
        ).fetchall()
    assert killed, "the server held no idle connection to kill"

    status, _, body = call("GET", url, key=key)

    assert status == 200 and body["summary"] == "Still here"
    assert SessionContext.objects.filter(session_id="fault-idle").count() == 1


def _own_backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ended_between_requests_is_replaced_and_a_live_one_is_kept():
    """CONN_HEALTH_CHECKS, on a persistent connection of its own: what each request and task starts with."""
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] and connection.settings_dict["CONN_MAX_AGE"]
    original = connections["default"]
    own = connections.create_connection("default")
    connections["default"] = own
    try:
        assert SessionContext.objects.count() == 0
        pid = _own_backend_pid()
        close_old_connections()  # as at the end of one request and the start of the next
        assert SessionContext.objects.count() == 0
        assert _own_backend_pid() == pid  # a live connection is kept

        close_old_connections()
        with _admin_connection() as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()[0]
        close_old_connections()

        make_session("fault-replaced", content={"summary": "written on a new connection"})  # no error
        assert SessionContext.objects.get(session_id="fault-replaced").summary == "written on a new connection"
        assert _own_backend_pid() != pid
    finally:
        own.close()
        connections["default"] = original
