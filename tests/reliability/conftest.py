from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from django.db import connection

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
