"""Helpers for the API tests: an agent-like JSON client over Django's test client."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from contexts.models import Message, Revision, SessionContext
from tests.factories import make_api_key


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


def etag_of(session_id: str, version: int | None = None, *, project=None) -> str:
    """The ETag the API sends for the session (of the default project unless given) at `version`, else now."""
    from contexts.api.http import etag
    from contexts.models import Project

    session = SessionContext.objects.get(session_id=session_id, project=project or Project.default())
    return etag(session.version if version is None else version, session.pk)


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


# --- examples printed in the docs (README.md, docs/api.md) run against a live server ------------------

ROOT = Path(__file__).resolve().parents[2]
PRINTED_URL = "http://127.0.0.1:8000"  # the docs' server (make run); tests swap in the live server's
PRINTED_KEY = "sck_..."  # the docs' placeholder key; tests swap in a real one (and set SESSIONCTX_KEY)
# Every curl must answer 2xx/3xx: --fail-with-body turns a 4xx/5xx into a failed script.
BASH_HARNESS = "set -euo pipefail\ncurl() { command curl --fail-with-body --show-error \"$@\"; }\n"


def code_blocks(doc: Path, language: str, *, section: str | None = None) -> list[str]:
    """The fenced code blocks of one language in a Markdown file (or one `## section` of it), in order."""
    text = doc.read_text()
    if section is not None:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def run_example(language: str, code: str, env: dict) -> subprocess.CompletedProcess:
    """Run a printed example as printed, except for the server URL and the key."""
    code = code.replace(PRINTED_URL, env["SESSIONCTX_URL"]).replace(PRINTED_KEY, env["SESSIONCTX_KEY"])
    command = ["bash", "-c", BASH_HARNESS + code] if language == "bash" else [sys.executable, "-c", code]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def agent_env(live_server):
    """The environment of an agent with a read-write key for the live server."""
    _, raw = make_api_key("read", "write", name="docs")
    return {**os.environ, "SESSIONCTX_KEY": raw, "SESSIONCTX_URL": live_server.url}
