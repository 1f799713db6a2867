"""Helpers for the API tests: an agent-like JSON client over Django's test client."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client

from contexts.models import Message, Revision, SessionContext


class Agent:
    """Calls the API as an agent does: JSON bodies, a Bearer key, plain headers."""

    def __init__(self, raw_key: str | None = None):
        self.client = Client()
        self.raw_key = raw_key

    def call(self, method: str, path: str, body=None, *, raw: bytes | str | None = None,
             content_type: str = "application/json", headers: dict | None = None):
        all_headers = {"Authorization": f"Bearer {self.raw_key}"} if self.raw_key else {}
        all_headers.update(headers or {})
        kwargs = {"headers": all_headers}
        if raw is not None:
            kwargs.update(data=raw, content_type=content_type)
        elif body is not None and method.upper() not in ("GET", "HEAD"):
            kwargs.update(data=json.dumps(body), content_type=content_type)
        return getattr(self.client, method.lower())(path, **kwargs)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one error shape, with the given status (and code)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def counts() -> tuple[int, int, int]:
    """Sessions, revisions and messages stored: 'nothing changed' means these stay put."""
    return SessionContext.objects.count(), Revision.objects.count(), Message.objects.count()


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def agent(write_key):
    return Agent(write_key[1])


@pytest.fixture
def reader(read_key):
    return Agent(read_key[1])
