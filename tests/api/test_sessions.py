"""Listing, creating and erasing sessions."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from contexts.models import DataDeletion, ExtractionRun, HandoffEvent, Message, Revision, SessionContext
from tests.api.conftest import assert_error, counts, etag_of
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def test_put_creates_a_session_once_and_is_idempotent(agent):
    body = {"mode": "planning", "user_id": "u-1", "agent_id": "bot", "team_id": "t"}
    first = agent.put("/api/v1/sessions/new-1", body)
    assert first.status_code == 201
    assert first["ETag"] == etag_of("new-1", 0)
    data = first.json()
    assert (data["session_id"], data["mode"], data["user_id"], data["agent_id"], data["team_id"]) == (
        "new-1", "planning", "u-1", "bot", "t")
    assert (data["status"], data["version"], data["summary"], data["plan"]) == ("active", 0, "", [])
    again = agent.put("/api/v1/sessions/new-1", {**body, "user_id": "someone-else"})
    assert again.status_code == 200
    assert again.json()["user_id"] == "u-1"  # owners are never overwritten
    assert SessionContext.objects.filter(session_id="new-1").count() == 1
    assert Revision.objects.count() == 0


def test_put_without_a_body_uses_the_default_mode(agent, settings):
    response = agent.put("/api/v1/sessions/bare-1")
    assert response.status_code == 201
    assert response.json()["mode"] == settings.SESSIONCTX_DEFAULT_MODE


@pytest.mark.parametrize("body", [{"mode": "chatty"}, {"user_id": 7}, {"colour": "red"}, {"user_id": "x" * 256}])
def test_put_with_bad_fields_is_400_and_creates_nothing(agent, body):
    assert_error(agent.put("/api/v1/sessions/never-1", body), 400, "invalid")
    assert not SessionContext.objects.filter(session_id="never-1").exists()


def test_list_is_newest_first_with_filters(agent):
    old = make_session("old-1", user_id="alice", agent_id="a1", mode="summary")
    SessionContext.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=2))
    make_session("mid-1", user_id="bob", agent_id="a1", mode="planning")
    make_session("new-1", user_id="alice", agent_id="a2", mode="planning")
    ids = [s["session_id"] for s in agent.get("/api/v1/sessions").json()["results"]]
    assert ids == ["new-1", "mid-1", "old-1"]
    assert [s["session_id"] for s in agent.get("/api/v1/sessions?user_id=alice").json()["results"]] == [
        "new-1", "old-1"]
    assert [s["session_id"] for s in agent.get("/api/v1/sessions?agent_id=a1&mode=planning").json()["results"]] == [
        "mid-1"]
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert [s["session_id"] for s in agent.get(f"/api/v1/sessions?updated_after={since}").json()["results"]] == [
        "new-1", "mid-1"]
    assert agent.get("/api/v1/sessions?status=handoff_requested").json()["results"] == []
    first = agent.get("/api/v1/sessions").json()["results"][0]
    assert set(first) == {"session_id", "user_id", "agent_id", "team_id", "mode", "status", "version",
                          "update_policy", "created_at", "updated_at"}


def test_list_pages_with_a_cursor_without_repeats(agent):
    for i in range(7):
        make_session(f"page-{i}")
    seen, url = [], "/api/v1/sessions?limit=3"
    while url:
        page = agent.get(url).json()
        assert len(page["results"]) <= 3
        seen += [s["session_id"] for s in page["results"]]
        url = page["next"]
    assert seen == [f"page-{i}" for i in reversed(range(7))]


@pytest.mark.parametrize("query", ["status=nope", "mode=x", "updated_after=yesterday"])
def test_list_with_bad_filters_is_400(agent, query):
    assert_error(agent.get(f"/api/v1/sessions?{query}"), 400, "invalid")


def test_delete_erases_the_session_and_everything_in_it(agent):
    session = make_session("erase-1", content={"summary": "secret"})
    agent.post("/api/v1/sessions/erase-1/messages", {"messages": [{"role": "user", "content": "my address"}]})
    agent.post("/api/v1/sessions/erase-1/handoff", {"reason": "help"})
    agent.post("/api/v1/sessions/erase-1/context/update")
    keep = make_session("keep-1", content={"summary": "other"})
    response = agent.delete("/api/v1/sessions/erase-1")
    assert response.status_code == 204
    assert not SessionContext.objects.filter(pk=session.pk).exists()
    for model in (Revision, Message, HandoffEvent, ExtractionRun):
        assert not model.objects.filter(session_id=session.pk).exists()
    assert Revision.objects.filter(session=keep).count() == 1
    assert_error(agent.get("/api/v1/sessions/erase-1/context"), 404, "not_found")
    # Recorded like a user's erasure: who, the counts, a SHA-256 of the session id; no content.
    record = DataDeletion.objects.get()
    assert (record.kind, record.project_id) == ("erasure", session.project_id) and record.actor.startswith("key:")
    assert record.criteria == {"session_id_sha256": hashlib.sha256(b"erase-1").hexdigest()}
    assert record.counts["sessions"] == 1 and record.counts["messages"] == 1 and record.counts["runs"] >= 1
    assert "secret" not in str(record.counts) + str(record.criteria)


def test_delete_of_an_unknown_session_is_404(agent):
    make_session("there-1")
    before = counts()
    assert_error(agent.delete("/api/v1/sessions/not-there"), 404, "not_found")
    assert counts() == before
