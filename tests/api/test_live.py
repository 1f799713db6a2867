"""An agent over real HTTP against a live server: the whole flow, and concurrent writers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connection
from django.test.testcases import LiveServerThread, _StaticFilesHandler

from contexts.models import Message, Revision, SessionContext
from tests.factories import make_api_key, make_session


class RoomyServer(ThreadedWSGIServer):
    # Django's test server queues 10 pending connections; a burst of 32 clients overflows that and the
    # kernel resets some of them, which says nothing about the API. Production servers queue far more.
    request_queue_size = 256


class RoomyLiveServerThread(LiveServerThread):
    server_class = RoomyServer


@pytest.fixture
def burst_server(transactional_db):
    """A live server (a real HTTP server in a thread, as pytest-django's) that takes bursts of clients."""
    thread = RoomyLiveServerThread("127.0.0.1", _StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


def _agent_session(url: str):
    _, raw = make_api_key("read", "write", name="live agent")
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {raw}"
    s.base = f"{url}/api/v1"
    return s


@pytest.fixture
def http(live_server):
    """A requests session that sends a read-write key, like an agent's HTTP client."""
    with _agent_session(live_server.url) as s:
        yield s


@pytest.fixture
def burst_http(burst_server):
    with _agent_session(burst_server) as s:
        yield s


def test_an_agent_runs_a_conversation_over_http(http):
    base = http.base
    assert requests.get(f"{base}/health", timeout=10).json()["status"] == "ok"

    posted = http.post(f"{base}/sessions/live-1/messages", timeout=10, json={
        "mode": "planning", "user_id": "u-1",
        "messages": [{"role": "user", "content": "Move us to PostgreSQL", "idempotency_key": "1u"},
                     {"role": "assistant", "content": "1. Dump 2. Load", "idempotency_key": "1a"}]})
    assert posted.status_code == 202
    assert [m["seq"] for m in posted.json()["stored"]] == [1, 2]
    retried = http.post(f"{base}/sessions/live-1/messages", timeout=10, json={
        "messages": [{"role": "user", "content": "Move us to PostgreSQL", "idempotency_key": "1u"}]})
    assert retried.json()["duplicates"] == 1

    context = http.get(f"{base}/sessions/live-1/context", timeout=10)
    assert context.status_code == 200
    tag = context.headers["ETag"]
    assert http.get(f"{base}/sessions/live-1/context", headers={"If-None-Match": tag}, timeout=10).status_code == 304

    # Extraction may or may not have run in-process; the agent writes on top of whatever version it read.
    written = http.patch(f"{base}/sessions/live-1/context", headers={"If-Match": tag}, timeout=10,
                         json={"goal": "Move to PostgreSQL", "plan": ["Dump", "Load"], "progress": ["Dump"]})
    assert written.status_code == 200, written.text
    assert written.json()["version"] == context.json()["version"] + 1
    stale = http.patch(f"{base}/sessions/live-1/context", headers={"If-Match": tag}, json={"goal": "lost"},
                       timeout=10)
    assert stale.status_code == 412
    assert stale.json()["error"]["details"]["current_version"] == written.json()["version"]

    prompt = http.get(f"{base}/sessions/live-1/context/prompt", timeout=10)
    assert prompt.headers["Content-Type"].startswith("text/plain")
    assert "Goal: Move to PostgreSQL" in prompt.text and "✓ Dump" in prompt.text

    revisions = http.get(f"{base}/sessions/live-1/revisions", timeout=10).json()["results"]
    assert revisions[0]["source"] == "api" and revisions[0]["version"] == written.json()["version"]

    handoff = http.post(f"{base}/sessions/live-1/handoff", json={"reason": "wants a person"}, timeout=10)
    assert handoff.json()["status"] == "handoff_requested"

    assert http.delete(f"{base}/sessions/live-1", timeout=10).status_code == 204
    assert http.get(f"{base}/sessions/live-1/context", timeout=10).status_code == 404


def test_oversize_and_malformed_bodies_over_http_get_the_error_shape(http, settings):
    base = http.base
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}]}'
    response = http.post(f"{base}/sessions/big-1/messages", data=big,
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    malformed = http.post(f"{base}/sessions/big-1/messages", data=b"{", headers={"Content-Type": "application/json"},
                          timeout=10)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "parse_error"
    bad_id = http.put(f"{base}/sessions/bad%20id", timeout=10)
    assert bad_id.status_code == 400 and bad_id.json()["error"]["code"] == "invalid_session_id"
    assert not SessionContext.objects.exists()


def _fire(session, url: str, requests_: list[dict], workers: int) -> list[int]:
    """Send the requests from `workers` threads at once; the first wave starts together."""
    start = threading.Barrier(min(workers, len(requests_)))

    def one(i_and_kwargs):
        i, kwargs = i_and_kwargs
        # A fresh connection per request: the test server closes idle keep-alive connections, and a
        # request sent on one just as it closes would fail for reasons that have nothing to do with the API.
        headers = {**session.headers, **kwargs.pop("headers", {}), "Connection": "close"}
        if i < start.parties:
            start.wait(timeout=30)
        return requests.request(url=url, headers=headers, timeout=60, **kwargs).status_code

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, enumerate(requests_)))


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_with_the_same_if_match_one_wins_the_rest_get_412(burst_http):
    http = burst_http
    # 200 writers on PostgreSQL; 20 on the embedded SQLite default (its writers queue on one lock).
    writers = 200 if connection.vendor == "postgresql" else 20
    session = make_session("race-1", content={"summary": "start"})
    body = [{"method": "PATCH", "headers": {"If-Match": '"1"'}, "json": {"summary": f"writer {i}"}}
            for i in range(writers)]
    statuses = _fire(http, f"{http.base}/sessions/race-1/context", body, workers=min(writers, 32))
    assert statuses.count(200) == 1, sorted(set(statuses))
    assert statuses.count(412) == writers - 1
    session.refresh_from_db()
    assert session.version == 2
    assert Revision.objects.filter(session=session).count() == 2
    assert session.summary == Revision.objects.get(session=session, version=2).snapshot["summary"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_message_posts_all_land_with_distinct_sequence_numbers(burst_http):
    http = burst_http
    # Proves the write path needs no retries: no "database is locked" on SQLite, no deadlock on PostgreSQL.
    make_session("burst-1")
    posts = [{"method": "POST", "json": {"messages": [{"role": "user", "content": f"m{i}",
                                                       "idempotency_key": f"k{i}"}]}} for i in range(20)]
    statuses = _fire(http, f"{http.base}/sessions/burst-1/messages", posts, workers=20)
    assert statuses == [202] * 20
    seqs = sorted(Message.objects.filter(session__session_id="burst-1").values_list("seq", flat=True))
    assert seqs == list(range(1, 21))
    assert SessionContext.objects.get(session_id="burst-1").last_message_seq == 20
