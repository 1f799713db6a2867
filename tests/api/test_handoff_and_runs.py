"""Asking for a human, and the extraction runs an agent can inspect."""

from __future__ import annotations

import uuid

import pytest

from contexts import services
from contexts.extraction.runs import extraction_request
from contexts.models import HandoffEvent, SessionContext
from contexts.services import Actor
from tests.api.conftest import assert_error, counts
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db


def test_handoff_puts_the_session_in_the_staff_queue(agent, write_key):
    session = make_session("ho-1")
    response = agent.post("/api/v1/sessions/ho-1/handoff", {"reason": "Customer wants a refund"})
    assert response.status_code == 200
    assert response.json()["status"] == "handoff_requested"
    session.refresh_from_db()
    assert session.handoff_reason == "Customer wants a refund"
    assert list(SessionContext.objects.filter(status="handoff_requested")) == [session]
    event = HandoffEvent.objects.get(session=session)
    assert (event.kind, event.actor) == ("requested", Actor.for_api_key(write_key[0]).label)
    # Asking twice is the same request.
    assert agent.post("/api/v1/sessions/ho-1/handoff", {"reason": "again"}).status_code == 200
    assert HandoffEvent.objects.filter(session=session).count() == 1


def test_handoff_needs_a_reason(agent):
    make_session("ho-2")
    before = counts()
    assert_error(agent.post("/api/v1/sessions/ho-2/handoff", {}), 400)
    assert_error(agent.post("/api/v1/sessions/ho-2/handoff", {"reason": ""}), 400)
    assert counts() == before


def test_handoff_while_a_person_owns_it_is_409(agent):
    session = make_session("ho-3")
    services.handoff_request(session=session, reason="x", actor=Actor.system("a"))
    services.handoff_claim(session=session, actor=Actor.for_user(make_user("erin")))
    assert_error(agent.post("/api/v1/sessions/ho-3/handoff", {"reason": "again"}), 409, "conflict")
    assert_error(agent.post("/api/v1/sessions/nobody/handoff", {"reason": "x"}), 404)


def test_runs_list_and_detail(reader):
    session = make_session("run-1")
    run = extraction_request(session=session, trigger="api")
    listed = reader.get("/api/v1/sessions/run-1/runs").json()["results"]
    assert [r["id"] for r in listed] == [str(run.id)]
    detail = reader.get(f"/api/v1/runs/{run.id}")
    assert detail.status_code == 200
    data = detail.json()
    assert set(data) == {"id", "session_id", "status", "trigger", "extractor", "model", "prompt_tokens",
                         "completion_tokens", "prompt_chars", "latency_ms", "model_calls", "attempts", "chunks",
                         "error", "first_seq", "last_seq", "from_version", "to_version", "superseded_by", "request_id",
                         "created_at", "started_at", "finished_at"}
    assert (data["session_id"], data["status"], data["trigger"]) == ("run-1", "queued", "api")
    assert data["superseded_by"] is None


def test_unknown_runs_are_404_in_the_error_shape(reader):
    assert_error(reader.get(f"/api/v1/runs/{uuid.uuid4()}"), 404, "not_found")
    assert_error(reader.get("/api/v1/runs/not-a-uuid"), 404, "not_found")
    assert_error(reader.get("/api/v1/sessions/nobody/runs"), 404)


def test_after_a_take_over_a_read_with_the_old_etag_gets_the_new_owner_not_a_304(agent,
                                                                                 django_capture_on_commit_callbacks):
    alice, erin = make_user("alice", role="support"), make_user("erin", role="editor")
    session = services.handoff_request(session=make_session("ho-etag"), reason="refund", actor=Actor.system("a"))
    services.handoff_claim(session=session, actor=Actor.for_user(alice))
    first = agent.get("/api/v1/sessions/ho-etag/context")
    assert first.status_code == 200 and first.json()["assignee"] == "alice"

    with django_capture_on_commit_callbacks(execute=True):  # as at a commit: the read cache drops the old answer
        services.handoff_take_over(session=SessionContext.objects.get(pk=session.pk), actor=Actor.for_user(erin))

    again = agent.get("/api/v1/sessions/ho-etag/context", headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 200 and again.json()["assignee"] == "erin" and again["ETag"] != first["ETag"]
