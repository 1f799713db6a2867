"""A body sent with Transfer-Encoding: chunked (no Content-Length) is read where the server de-chunks it
(gunicorn), and refused with a clear 411 where it does not (Django's development server), never read as empty."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from django.test import override_settings

from contexts.models import Message
from tests.factories import make_api_key

BATCH = {"messages": [{"role": "user", "content": "Chunked hello", "idempotency_key": "c1"}], "mode": "summary"}


def post_chunked(base_url: str, path: str, body: bytes, key: str, *, piece: int = 7) -> tuple[int, dict]:
    """POST the body in chunks of `piece` bytes, with Transfer-Encoding: chunked and no Content-Length."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", path, body=(body[i:i + piece] for i in range(0, len(body), piece)),
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                     encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_gunicorn_reads_a_chunked_body(gunicorn):
    _, key = make_api_key("read", "write")
    status, body = post_chunked(gunicorn.url, "/api/v1/sessions/chunked-1/messages", json.dumps(BATCH).encode(), key)
    assert status == 202, body
    assert body["session_id"] == "chunked-1" and [m["seq"] for m in body["stored"]] == [1]
    assert list(Message.objects.filter(session__session_id="chunked-1").values_list("content", flat=True)) == [
        "Chunked hello"]


def test_a_chunked_body_over_the_limit_is_413_with_gunicorn(gunicorn):
    _, key = make_api_key("read", "write")
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 1_100_000}]}).encode()
    status, body = post_chunked(gunicorn.url, "/api/v1/sessions/chunked-2/messages", big, key, piece=65536)
    assert status == 413 and body["error"]["code"] == "payload_too_large", body
    assert not Message.objects.filter(session__session_id="chunked-2").exists()


@override_settings(ALLOWED_HOSTS=["*"])
def test_the_development_server_answers_411_for_a_chunked_body(live_server, transactional_db):
    _, key = make_api_key("read", "write")
    status, body = post_chunked(live_server.url, "/api/v1/sessions/chunked-3/messages", json.dumps(BATCH).encode(),
                                key)
    assert status == 411, body
    assert body["error"]["code"] == "length_required" and "Content-Length" in body["error"]["message"]
    assert not Message.objects.filter(session__session_id="chunked-3").exists()
