"""Optional Sentry (SENTRY_DSN): a view's error in a real gunicorn and a failing task in a real Celery worker reach a
Sentry endpoint (a tiny HTTP server here that receives the envelopes), tagged with the request id, and without
the request's credentials, cookies or body."""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings as django_settings
from django.db import connection

from contexts.infra import requestid
from tests.extraction.test_worker import cluster  # noqa: F401 - a fixture
from tests.reliability.conftest import call
from tests.reliability.servers import Gunicorn, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)
SECRETS = ("sk-header-secret-0042", "cookie-secret-0042", "body-secret-0042")


class SentryReceiver:
    """Sentry's envelope endpoint (POST /api/<project>/envelope/), keeping what it receives."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        received = self.raw

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        found = []
        for envelope in list(self.raw):
            for line in envelope.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and "exception" in item:
                    found.append(item)
        return found

    def wait_for(self, condition, what: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if condition(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no Sentry event for {what}; received: {self.events()}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def exception_types(event: dict) -> list[str]:
    return [value["type"] for value in event["exception"]["values"]]


@pytest.fixture
def receiver():
    found = SentryReceiver()
    yield found
    found.close()


def test_a_view_error_reaches_sentry_with_the_request_id_and_no_secrets(receiver):
    env = subprocess_env(connection.settings_dict, DJANGO_SETTINGS_MODULE="tests.infra.sentry_settings",
                         SENTRY_DSN=receiver.dsn, SENTRY_ENVIRONMENT="test")
    server = Gunicorn(env).wait_ready()
    try:
        status, head, _ = call("POST", f"{server.url}/test-failure/", body={"note": SECRETS[2]},
                               headers={"X-Request-ID": "trace-sentry-view", "Authorization": f"Bearer {SECRETS[0]}",
                                        "Cookie": f"sessionid={SECRETS[1]}"})
        assert (status, head["X-Request-ID"]) == (500, "trace-sentry-view")
        event = receiver.wait_for(lambda e: "DeliberateFailure" in exception_types(e), "the view's error")
    finally:
        server.stop()
    assert event["tags"]["request_id"] == "trace-sentry-view"
    assert event["environment"] == "test"
    assert event["request"]["url"].endswith("/test-failure/")
    print(json.dumps({k: event[k] for k in ("tags", "request")}, indent=1))
    everything = b"".join(receiver.raw).decode(errors="replace")
    for secret in SECRETS:
        assert secret not in everything


def test_nothing_is_sent_without_a_dsn(receiver):
    env = subprocess_env(connection.settings_dict, DJANGO_SETTINGS_MODULE="tests.infra.sentry_settings")
    env.pop("SENTRY_DSN", None)
    server = Gunicorn(env).wait_ready()
    try:
        assert call("GET", f"{server.url}/test-failure/")[0] == 500
        time.sleep(1.5)
    finally:
        server.stop()
    assert receiver.raw == []


@pytest.mark.worker
def test_a_failing_task_in_a_real_worker_reaches_sentry_with_the_publishing_request_id(cluster, receiver):  # noqa: F811
    from sessionctx.celery import app

    _, start = cluster
    start("sentry", DJANGO_SETTINGS_MODULE="tests.infra.sentry_settings", SENTRY_DSN=receiver.dsn)
    token = requestid._current.set("trace-sentry-task")
    try:
        # The request id travels in the message header, as it does for the extraction tasks a request queues.
        app.send_task("tests.infra.failing_task", args=["run 7"], queue=django_settings.CELERY_TASK_DEFAULT_QUEUE)
    finally:
        requestid._current.reset(token)
    event = receiver.wait_for(lambda e: "DeliberateFailure" in exception_types(e), "the task's error", timeout=30)
    assert event["tags"]["request_id"] == "trace-sentry-task"
    assert event["tags"].get("celery_task_id")
    assert "the task failed on purpose: run 7" in event["exception"]["values"][-1]["value"]
    print(json.dumps(event["tags"], indent=1))
