from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from django.db import connection

from contexts.models import ExtractionRun, SessionContext
from tests.reliability.servers import Gunicorn, subprocess_env


def call(method: str, url: str, *, key: str | None = None, body: dict | None = None,
         headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, dict | str]:
    """One HTTP request; (status, headers, JSON body or text)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, head, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, dict(exc.headers), exc.read()
    try:
        return status, head, json.loads(raw) if raw else {}
    except ValueError:
        return status, head, raw.decode(errors="replace")


# How a requested update may end well: done, nothing to do, or taken over by a later run of its session.
FINISHED = ["succeeded", "skipped", "superseded"]


def wait_until(condition, *, timeout: float = 40, what: str) -> None:
    """Poll `condition` until it holds; past `timeout`, fail saying what was awaited and which runs are unfinished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    runs = list(ExtractionRun.objects.exclude(status__in=FINISHED).values_list(
        "session__session_id", "status", "attempts", "enqueued_at", "error"))
    raise AssertionError(f"timed out waiting for {what}; unfinished runs: {runs}")


def all_caught_up() -> bool:
    """No run queued or running, and every session's snapshot has all its messages."""
    busy = ExtractionRun.objects.filter(status__in=["queued", "running"]).exists()
    behind = any(s.cursor_seq != s.last_message_seq for s in SessionContext.objects.all())
    return not busy and not behind

@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")


@pytest.fixture(scope="module")
def _gunicorn(django_db_setup):
    server = Gunicorn(subprocess_env(connection.settings_dict)).wait_ready()
    yield server
    server.stop()


@pytest.fixture
def gunicorn(_gunicorn, transactional_db):
    """A real gunicorn (one sync worker, persistent DB connections) on this test run's database."""
    return _gunicorn
