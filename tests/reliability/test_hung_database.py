"""A PostgreSQL that hangs (behind a SIGSTOPped proxy: connections accepted, bytes acknowledged, no answer)
costs a request a bounded wait and a 503 in the error shape, never a hung request; health answers within 2 s;
and the service is back within a second of the database. DB_STATEMENT_TIMEOUT bounds the statements of web
requests only: a management command (a migration, a purge, an import) runs as long as it needs.

gunicorn runs gthread workers, as in production, with short timeouts so the tests stay quick.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from django.db import connection, transaction

from contexts.models import SessionContext
from tests.extraction.workers import database_url
from tests.factories import make_api_key, make_session
from tests.reliability.conftest import call
from tests.reliability.servers import ROOT, Gunicorn, subprocess_env
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.heavy, pytest.mark.django_db(transaction=True)]

STATEMENT_TIMEOUT = 3
# Longer than the statement timeout's bound, so that a request which reconnects after its deadline shows.
CONNECT_TIMEOUT = 4
# A request stuck on a kept connection waits out the statement timeout and a little grace, one that (re)connects
# waits out the connect timeout, never both; a busy CI machine gets 1.5 s more.
API_BOUND = max(STATEMENT_TIMEOUT + 0.5, CONNECT_TIMEOUT) + 1.5
HEALTH_BOUND = 2
RECOVERY_BOUND = 1


@pytest.fixture
def proxied():
    """gunicorn (one worker, 4 threads) whose PostgreSQL is reached through a proxy the test can freeze."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    settings_dict = connection.settings_dict
    proxy = TcpProxy(settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432))
    env = subprocess_env(
        settings_dict, DATABASE_URL=database_url({**settings_dict, "HOST": "127.0.0.1", "PORT": proxy.port}),
        DB_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT), DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        API_THROTTLE_RATE="1000000/min",
    )
    env.pop("CACHE_URL", None)  # every read goes to the database
    server = Gunicorn(env, threads=4)
    try:
        server.wait_ready()
        yield server, proxy
    finally:
        proxy.thaw()
        server.stop()
        proxy.stop()


def _timed(method: str, url: str, *, timeout: float, **kwargs) -> tuple[int | None, dict, float]:
    """(status, body, seconds); status None when no answer came within `timeout`."""
    started = time.monotonic()
    try:
        status, _, body = call(method, url, timeout=timeout, **kwargs)
    except OSError:  # the client gave up: the server is still waiting on the database
        status, body = None, {}
    return status, body, time.monotonic() - started


def _in_parallel(requests: dict[str, tuple]) -> dict[str, tuple[int | None, dict, float]]:
    answers: dict[str, tuple] = {}
    threads = []
    for name, (delay, method, url, kwargs) in requests.items():
        def run(name=name, delay=delay, method=method, url=url, kwargs=kwargs):
            time.sleep(delay)
            answers[name] = _timed(method, url, **kwargs)
        threads.append(threading.Thread(target=run))
        threads[-1].start()
    for thread in threads:
        thread.join(60)
    return answers


def _is_error_shape(body, code: str) -> bool:
    return (isinstance(body, dict) and set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
            and body["error"]["code"] == code)


def test_a_hung_database_costs_a_bounded_503_health_answers_in_2s_and_the_service_recovers_at_once(proxied):
    server, proxy = proxied
    make_session("hung-db", mode="planning", content={"summary": "Before the freeze", "plan": ["Wait"]})
    _, key = make_api_key("read", "write")
    context = f"{server.url}/api/v1/sessions/hung-db/context"
    health = f"{server.url}/api/v1/health"
    api = {"key": key, "timeout": API_BOUND + 1}
    # Every thread holds a persistent connection through the proxy before it freezes.
    warm = _in_parallel({f"warm-{i}": (0, "GET", context, api) for i in range(4)})
    assert {status for status, _, _ in warm.values()} == {200}

    proxy.freeze()
    frozen = _in_parallel({
        "read": (0, "GET", context, api),
        "write": (0, "PATCH", context, {**api, "body": {"summary": "During"}, "headers": {"If-Match": '"1"'}}),
        "health": (0.3, "GET", health, {"timeout": HEALTH_BOUND + 1}),
    })
    # A second round on every thread: those whose connection was cut off reconnect to the hung database, the others
    # still wait on their kept one.
    again = _in_parallel({**{f"read again {i}": (0, "GET", context, api) for i in range(3)},
                          "health again": (0.3, "GET", health, {"timeout": HEALTH_BOUND + 1})})
    timings = {name: (status, round(elapsed, 2)) for name, (status, _, elapsed) in {**frozen, **again}.items()}

    for name in ("read", "write", "read again 0", "read again 1", "read again 2"):
        status, body, elapsed = {**frozen, **again}[name]
        assert status == 503 and _is_error_shape(body, "unavailable"), timings
        assert elapsed < API_BOUND, timings
    for name in ("health", "health again"):
        status, body, elapsed = {**frozen, **again}[name]
        assert status == 503 and _is_error_shape(body, "unavailable"), timings
        assert set(body["error"]["details"]["failed"]) == {"database"}, body
        assert elapsed < HEALTH_BOUND, timings

    proxy.thaw()
    thawed = time.monotonic()
    answers = []
    while time.monotonic() - thawed < RECOVERY_BOUND + 5:
        answers.append((_timed("GET", health, timeout=5)[0], _timed("GET", context, **api)[0]))
        if answers[-1] == (200, 200):
            break
        time.sleep(0.05)
    recovered = time.monotonic() - thawed
    assert answers[-1] == (200, 200) and recovered < RECOVERY_BOUND, (round(recovered, 2), answers)
    status, _, body = call("GET", context, key=key)
    assert status == 200 and body["summary"] in {"Before the freeze", "During"}


def test_a_web_request_waiting_on_a_lock_is_ended_by_the_server_at_the_statement_timeout(proxied):
    server, _ = proxied
    make_session("locked", mode="planning", content={"summary": "Locked"})
    _, key = make_api_key("read", "write")
    context = f"{server.url}/api/v1/sessions/locked/context"
    with transaction.atomic():
        SessionContext.objects.select_for_update().get(session_id="locked")  # a long job holds the row
        status, body, elapsed = _timed("PATCH", context, key=key, body={"summary": "Blocked"},
                                       headers={"If-Match": '"1"'}, timeout=API_BOUND + 1)
    assert status == 503 and _is_error_shape(body, "unavailable"), (status, body)
    # PostgreSQL cancelled the statement (the connection stays usable), not our cut-off half a second later.
    assert STATEMENT_TIMEOUT - 0.1 < elapsed < API_BOUND, elapsed
    assert "canceling statement due to statement timeout" in server.output()
    status, _, body = call("PATCH", context, key=key, body={"summary": "After"}, headers={"If-Match": '"1"'})
    assert status == 200 and body["summary"] == "After", body


def test_a_management_command_is_not_bound_by_the_web_statement_timeout(postgres_only, transactional_db):
    env = subprocess_env(connection.settings_dict, DB_STATEMENT_TIMEOUT="1")
    longer = "from django.db import connection; connection.cursor().execute('SELECT pg_sleep(1.5)'); print('done')"
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", longer], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "done", result.stderr[-2000:]
