"""Request ids: taken from X-Request-ID or made, returned, stored on the run the request asked for, on log lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contexts.models import ExtractionRun
from tests.api.conftest import Agent
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TURN = [{"role": "user", "content": "Plan my trip"}, {"role": "assistant", "content": "1. Flights 2. Hotel"}]


@pytest.fixture
def agent(settings):
    settings.SESSIONCTX_AUTO_UPDATE = True
    return Agent(make_api_key("read", "write")[1])


def test_the_callers_request_id_is_returned_and_stored_on_the_run_it_asked_for(agent,
                                                                               django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = agent.post("/api/v1/sessions/rid-1/messages", {"messages": TURN},
                              headers={"X-Request-ID": "agent-7.turn-42"})
    assert response.status_code == 202, response.content
    assert response["X-Request-ID"] == "agent-7.turn-42"
    run = ExtractionRun.objects.get(pk=response.json()["update"]["run_id"])
    assert (run.status, run.request_id) == ("succeeded", "agent-7.turn-42")
    # Another request reads it back from the run's record, under its own id.
    detail = agent.get(f"/api/v1/runs/{run.pk}")
    assert detail.json()["request_id"] == "agent-7.turn-42"
    assert detail["X-Request-ID"] not in ("", "agent-7.turn-42")


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 65, "quote\"d", "new\nline", "ünïcode"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(agent, sent):
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = agent.post("/api/v1/sessions/rid-2/messages", {"messages": TURN[:1]}, headers=headers)
    second = agent.get("/api/v1/sessions/rid-2/context", headers=headers)
    ids = [first["X-Request-ID"], second["X-Request-ID"]]
    assert all(len(i) == 32 and i.isalnum() for i in ids), ids
    assert ids[0] != ids[1] and sent not in ids


def test_errors_and_pages_carry_the_request_id_too(agent):
    assert agent.get("/api/v1/nothing-here", headers={"X-Request-ID": "r-404"})["X-Request-ID"] == "r-404"
    assert Agent().get("/accounts/login/", headers={"X-Request-ID": "r-page"})["X-Request-ID"] == "r-page"


LOG_SCRIPT = """
import logging
from django.http import HttpResponse
from django.test import RequestFactory
from contexts.infra.requestid import RequestIdMiddleware

logger = logging.getLogger("contexts.test")

def view(request):
    logger.warning("inside %s", "it")
    return HttpResponse("ok")

logger.info("outside any request")
RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-abc"))
"""


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_log_lines_carry_the_request_id_as_json_or_plain_text(log_format):
    env = {**os.environ, "DEBUG": "true", "LOG_FORMAT": log_format, "DJANGO_SETTINGS_MODULE": "sessionctx.settings"}
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", LOG_SCRIPT], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "contexts.test" in line]
    assert len(lines) == 2, out.stderr
    if log_format == "json":
        records = [json.loads(line) for line in lines]
        assert [(r["logger"], r["level"], r["request_id"], r["message"]) for r in records] == [
            ("contexts.test", "INFO", "-", "outside any request"), ("contexts.test", "WARNING", "req-abc", "inside it")]
        assert all(r["time"] for r in records)
    else:
        assert lines[0].endswith("INFO contexts.test [-] outside any request")
        assert lines[1].endswith("WARNING contexts.test [req-abc] inside it")


def test_a_bad_log_format_is_refused_at_start():
    env = {**os.environ, "DEBUG": "true", "LOG_FORMAT": "xml"}
    out = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "LOG_FORMAT must be plain or json" in out.stderr


@pytest.mark.django_db(transaction=True)
def test_work_the_embedded_default_runs_in_its_threads_logs_under_the_id_of_the_request_that_caused_it(settings):
    # No broker: the webhook delivery the request caused runs in this process's pool, not in the request. Its
    # receiver answers 410 Gone, and the line saying the endpoint is disabled must be found under the request's id.
    from contexts.infra.requestid import RequestIdFilter
    from contexts.services.webhooks import webhook_endpoint_create
    from tests.factories import make_session
    from tests.services.webhook_receiver import Receiver

    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    settings.SESSIONCTX_INPROCESS_WORKERS = 1
    seen: list[tuple[str, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.request_id, record.getMessage()))

    handler = Keep(level=logging.WARNING)
    handler.addFilter(RequestIdFilter())
    hooks_logger = logging.getLogger("contexts.services.webhooks")
    hooks_logger.addHandler(handler)
    try:
        with Receiver(410) as receiver:
            endpoint = webhook_endpoint_create(url=receiver.url, event_types=["handoff.requested"])
            make_session("rid-hook")
            response = Agent(make_api_key("read", "write")[1]).post(
                "/api/v1/sessions/rid-hook/handoff", {"reason": "refund"}, headers={"X-Request-ID": "agent-7.hook"})
            receiver.wait_for(1)
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        hooks_logger.removeHandler(handler)

    assert response.status_code == 200, response.content
    assert seen == [("agent-7.hook", f"webhook endpoint {endpoint.pk} disabled: The receiver answered 410 Gone.")]
