"""Reading the snapshot (ETag, 304, prompt) and writing it with optimistic concurrency."""

from __future__ import annotations

import pytest

from contexts import services
from contexts.models import Revision
from contexts.services import Actor
from tests.api.conftest import assert_error, counts, etag_of
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

CONTEXT_FIELDS = {"session_id", "user_id", "agent_id", "team_id", "mode", "status", "assignee", "summary", "goal",
                  "plan", "progress", "handoff_note", "version", "created_at", "updated_at"}


def test_context_has_every_field_and_an_etag(reader):
    make_session("ctx-1", user_id="u", agent_id="a", team_id="t",
                 content={"summary": "S", "goal": "G", "plan": ["one", "two"], "progress": ["one"]})
    response = reader.get("/api/v1/sessions/ctx-1/context")
    assert response.status_code == 200
    assert response["ETag"] == etag_of("ctx-1") and response["ETag"].startswith('"1-')
    data = response.json()
    assert set(data) == CONTEXT_FIELDS
    assert (data["summary"], data["goal"], data["plan"], data["progress"], data["version"]) == (
        "S", "G", ["one", "two"], ["one"], 1)
    assert (data["mode"], data["status"], data["assignee"]) == ("planning", "active", None)


def test_if_none_match_with_the_current_etag_is_304_and_a_stale_one_is_200(reader):
    make_session("etag-1", content={"summary": "x"})
    not_modified = reader.get("/api/v1/sessions/etag-1/context", headers={"If-None-Match": etag_of("etag-1")})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    stale = etag_of("etag-1", 0)
    assert reader.get("/api/v1/sessions/etag-1/context", headers={"If-None-Match": stale}).status_code == 200


# Transactional: with the read cache on (CI's Redis run), a change reaches it when its transaction commits.
@pytest.mark.django_db(transaction=True)
def test_an_etag_of_an_erased_session_never_matches_the_new_session_of_that_id(agent):
    # Erased and created again under the same id, a session starts again at the same versions: an agent (or a
    # proxy) holding the old ETag must get the new conversation, not a 304 keeping the erased one, and a write
    # based on what it read of the erased one must fail rather than land on the new one.
    assert agent.put("/api/v1/sessions/reborn", {}).status_code == 201
    old = agent.patch("/api/v1/sessions/reborn/context", {"summary": "the erased conversation"},
                      headers={"If-Match": '"0"'})
    assert old.status_code == 200 and old.json()["version"] == 1
    old_prompt = agent.get("/api/v1/sessions/reborn/context/prompt")
    assert agent.delete("/api/v1/sessions/reborn").status_code == 204
    assert agent.put("/api/v1/sessions/reborn", {}).status_code == 201
    assert agent.patch("/api/v1/sessions/reborn/context", {"summary": "a new conversation"},
                       headers={"If-Match": '"0"'}).status_code == 200  # the bare version still works

    for path, held in (("/context", old["ETag"]), ("/context/prompt", old_prompt["ETag"])):
        again = agent.get(f"/api/v1/sessions/reborn{path}", headers={"If-None-Match": held})
        assert again.status_code == 200 and again["ETag"] != held
        assert "a new conversation" in again.content.decode()
    refused = agent.patch("/api/v1/sessions/reborn/context", {"goal": "meant for the old one"},
                          headers={"If-Match": old["ETag"]})
    assert_error(refused, 412, "version_conflict")
    assert agent.get("/api/v1/sessions/reborn/context").json()["goal"] == ""
    assert_error(agent.patch("/api/v1/sessions/reborn/context", {"goal": "x"}, headers={"If-Match": '"1-zz"'}),
                 400, "invalid_precondition")


def test_context_shows_when_a_person_owns_the_conversation(reader):
    session = make_session("owned-1")
    services.handoff_request(session=session, reason="needs a human", actor=Actor.system("agent"))
    services.handoff_claim(session=session, actor=Actor.for_user(make_user("carol")))
    data = reader.get("/api/v1/sessions/owned-1/context").json()
    assert (data["status"], data["assignee"]) == ("human", "carol")


def test_unknown_session_is_404(reader):
    assert_error(reader.get("/api/v1/sessions/nobody/context"), 404, "not_found")


def test_prompt_is_plain_text_by_default_and_json_on_request(reader):
    make_session("prompt-1", content={"summary": "Booking a trip", "goal": "Lisbon", "plan": ["Flights"]})
    text = reader.get("/api/v1/sessions/prompt-1/context/prompt")
    assert text.status_code == 200
    assert text["Content-Type"].startswith("text/plain")
    body = text.content.decode()
    assert body.startswith("<session_context>") and body.endswith("</session_context>")
    assert "Summary: Booking a trip" in body and "1. Flights" in body
    as_json = reader.get("/api/v1/sessions/prompt-1/context/prompt", headers={"Accept": "application/json"})
    assert as_json["Content-Type"].startswith("application/json")
    assert as_json.json() == {"prompt": body, "version": 1}


def test_prompt_is_empty_when_there_is_nothing_to_say(reader):
    make_session("empty-1")
    assert reader.get("/api/v1/sessions/empty-1/context/prompt").content == b""
    assert reader.get("/api/v1/sessions/empty-1/context/prompt",
                      headers={"Accept": "application/json"}).json() == {"prompt": "", "version": 0}


def test_prompt_errors_are_json_even_when_text_was_asked_for(reader):
    assert_error(reader.get("/api/v1/sessions/nobody/context/prompt", headers={"Accept": "text/plain"}), 404)


def test_patch_with_if_match_changes_only_the_given_fields_and_writes_a_revision(agent, write_key):
    make_session("w-1", content={"summary": "old", "goal": "keep me"})
    response = agent.patch("/api/v1/sessions/w-1/context", {"summary": "new", "plan": ["a", "b"]},
                           headers={"If-Match": '"1"'})
    assert response.status_code == 200, response.content
    assert response["ETag"] == etag_of("w-1") and response["ETag"].startswith('"2-')
    data = response.json()
    assert (data["summary"], data["goal"], data["plan"], data["version"]) == ("new", "keep me", ["a", "b"], 2)
    revision = Revision.objects.get(session__session_id="w-1", version=2)
    assert revision.source == "api"
    assert revision.actor == Actor.for_api_key(write_key[0]).label
    assert revision.changed_fields == ["summary", "plan"]


def test_a_version_field_can_stand_in_for_if_match(agent):
    make_session("w-2")
    response = agent.patch("/api/v1/sessions/w-2/context", {"summary": "hi", "version": 0, "reason": "agent notes"})
    assert response.status_code == 200
    assert Revision.objects.get(session__session_id="w-2").reason == "agent notes"


def test_a_write_without_a_version_is_428_and_changes_nothing(agent):
    make_session("w-3", content={"summary": "kept"})
    before = counts()
    for method in ("PATCH", "PUT"):
        error = assert_error(agent.call(method, "/api/v1/sessions/w-3/context", {"summary": "lost"}), 428,
                             "precondition_required")
        assert "If-Match" in error["message"]
    assert counts() == before


def test_a_stale_version_is_412_with_the_current_version_and_changes_nothing(agent):
    session = make_session("w-4", content={"summary": "kept"})
    services.snapshot_update(session=session, expected_version=1, changes={"goal": "moved on"}, source="staff",
                             actor=Actor.system("someone"))
    before = counts()
    response = agent.patch("/api/v1/sessions/w-4/context", {"summary": "lost"}, headers={"If-Match": '"1"'})
    error = assert_error(response, 412, "version_conflict")
    assert error["details"] == {"expected_version": 1, "current_version": 2}
    session.refresh_from_db()
    assert (session.summary, session.version) == ("kept", 2)
    assert counts() == before


def test_weak_etags_never_match_and_garbage_is_400(agent):
    make_session("w-5")
    assert_error(agent.patch("/api/v1/sessions/w-5/context", {"summary": "a"}, headers={"If-Match": 'W/"0"'}), 412,
                 "version_conflict")
    assert_error(agent.patch("/api/v1/sessions/w-5/context", {"summary": "b"}, headers={"If-Match": "*"}), 400,
                 "invalid_precondition")
    # If-Match and a body version are both preconditions: the one that is not current fails.
    error = assert_error(agent.patch("/api/v1/sessions/w-5/context", {"summary": "b", "version": 5},
                                     headers={"If-Match": '"0"'}), 412, "version_conflict")
    assert error["details"] == {"expected_version": 5, "current_version": 0}


def test_put_replaces_the_whole_content(agent):
    make_session("w-6", content={"summary": "s", "goal": "g", "plan": ["p"], "progress": ["p"]})
    response = agent.put("/api/v1/sessions/w-6/context", {"summary": "only this"}, headers={"If-Match": '"1"'})
    assert response.status_code == 200
    data = response.json()
    assert (data["summary"], data["goal"], data["plan"], data["progress"], data["version"]) == (
        "only this", "", [], [], 2)
    assert data["mode"] == "planning"


def test_a_put_without_a_body_is_refused_not_read_as_an_empty_snapshot(agent):
    # A client that lost its JSON (or sent none) emptied the whole snapshot; `{}` still does, as asked.
    make_session("w-6b", content={"summary": "s", "goal": "g", "plan": ["p"]})
    before = counts()

    error = assert_error(agent.put("/api/v1/sessions/w-6b/context", headers={"If-Match": '"1"'}), 400, "invalid")

    assert "needs it as a JSON body" in error["message"] and counts() == before
    assert agent.get("/api/v1/sessions/w-6b/context").json()["goal"] == "g"
    emptied = agent.put("/api/v1/sessions/w-6b/context", {}, headers={"If-Match": '"1"'})
    assert emptied.status_code == 200 and (emptied.json()["goal"], emptied.json()["version"]) == ("", 2)


@pytest.mark.parametrize("body", [
    {"plan": "not a list"},
    {"plan": ["ok", ""]},
    {"plan": ["ok", 3]},
    {"progress": [None]},
    {"summary": 42},
    {"summary": None},
    {"mode": "freestyle"},
    {"status": "closed"},
    {"version": "1"},
    {"colour": "blue"},
    {"summary": "x" * 4001},
    {"plan": [f"step {i}" for i in range(51)]},
    {"plan": ["x" * 501]},
])
def test_invalid_snapshot_writes_are_400_and_change_nothing(agent, body):
    session = make_session("w-7", content={"summary": "kept"})
    before = counts()
    error = assert_error(agent.patch("/api/v1/sessions/w-7/context", body, headers={"If-Match": '"1"'}), 400)
    assert error["details"]["fields"]
    session.refresh_from_db()
    assert (session.summary, session.version) == ("kept", 1)
    assert counts() == before


def test_reset_needs_a_reason_and_keeps_history(agent):
    session = make_session("r-1", content={"summary": "s", "plan": ["p"]})
    assert_error(agent.post("/api/v1/sessions/r-1/context/reset", {}), 400, "invalid")
    assert_error(agent.post("/api/v1/sessions/r-1/context/reset", {"reason": "  "}), 400)
    response = agent.post("/api/v1/sessions/r-1/context/reset", {"reason": "user asked to start over"})
    assert response.status_code == 200
    data = response.json()
    assert (data["summary"], data["plan"], data["version"]) == ("", [], 2)
    revisions = list(Revision.objects.filter(session=session).order_by("version"))
    assert [r.source for r in revisions] == ["api", "reset"]
    assert revisions[0].snapshot["summary"] == "s"
    assert revisions[1].reason == "user asked to start over"


def test_reset_with_a_stale_if_match_is_412(agent):
    make_session("r-2", content={"summary": "s"})
    assert_error(agent.post("/api/v1/sessions/r-2/context/reset", {"reason": "x"}, headers={"If-Match": '"0"'}),
                 412, "version_conflict")
    assert Revision.objects.filter(session__session_id="r-2").count() == 1


def test_requesting_an_update_queues_one_run(agent):
    session = make_session("u-1")
    response = agent.post("/api/v1/sessions/u-1/context/update")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    run = session.runs.get()
    assert str(run.id) == body["run_id"] and run.trigger == "api"
    # Asking again while one is queued joins it.
    assert agent.post("/api/v1/sessions/u-1/context/update").json()["run_id"] == body["run_id"]
    assert session.runs.count() == 1
    assert_error(agent.post("/api/v1/sessions/nobody/context/update"), 404)
