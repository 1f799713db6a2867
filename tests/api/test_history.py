"""The audit history and reverting to an earlier version."""

from __future__ import annotations

import pytest

from contexts import services
from contexts.models import Revision, SessionContext
from contexts.services import Actor
from contexts.snapshot import CONTENT_FIELDS
from tests.api.conftest import assert_error, counts, etag_of
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def _three_versions(session_id: str):
    session = make_session(session_id, content={"summary": "v1", "plan": ["a"]})
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "v2"}, source="staff",
                             actor=Actor.system("user:dora"), reason="typo")
    services.snapshot_update(session=session, expected_version=2, changes={"plan": ["a", "b"]}, source="extraction",
                             actor=Actor.for_model("m"))
    return session


def test_revisions_are_newest_first_with_who_why_when_and_what(reader):
    _three_versions("h-1")
    response = reader.get("/api/v1/sessions/h-1/revisions")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["version"] for r in results] == [3, 2, 1]
    assert set(results[0]) == {"version", "source", "actor", "reason", "created_at", "changed_fields", "snapshot"}
    assert (results[1]["source"], results[1]["actor"], results[1]["reason"], results[1]["changed_fields"]) == (
        "staff", "user:dora", "typo", ["summary"])
    assert results[0]["snapshot"]["plan"] == ["a", "b"] and results[0]["snapshot"]["summary"] == "v2"


def test_revisions_page_with_a_cursor(reader):
    session = make_session("h-2")
    for v in range(5):
        services.snapshot_update(session=session, expected_version=v, changes={"summary": f"s{v}"}, source="api",
                                 actor=Actor.system("t"))
    first = reader.get("/api/v1/sessions/h-2/revisions?limit=2").json()
    assert [r["version"] for r in first["results"]] == [5, 4]
    second = reader.get(first["next"]).json()
    assert [r["version"] for r in second["results"]] == [3, 2]


def test_revisions_of_an_unknown_session_is_404(reader):
    assert_error(reader.get("/api/v1/sessions/nobody/revisions"), 404)


def _assert_reverted(session_id: str, *, to_version: int, new_version: int, reason: str, key) -> None:
    """The session holds `to_version`'s content at `new_version`, with a revision saying who, why and what."""
    session = SessionContext.objects.get(session_id=session_id)
    restored = Revision.objects.get(session=session, version=to_version).snapshot
    assert session.version == new_version
    assert {name: getattr(session, name) for name in CONTENT_FIELDS} == {name: restored[name]
                                                                         for name in CONTENT_FIELDS}
    revision = Revision.objects.get(session=session, version=new_version)
    assert (revision.source, revision.actor, revision.actor_user) == ("api", f"key:{key.prefix}:{key.name}", None)
    assert revision.reason == f"Reverted to version {to_version}: {reason}"
    assert revision.snapshot == session.snapshot()
    assert list(Revision.objects.filter(session=session).values_list("version", flat=True)) == list(
        range(new_version, 0, -1))


def test_revert_restores_an_old_version_as_a_new_revision(agent, write_key):
    _three_versions("h-3")
    response = agent.post("/api/v1/sessions/h-3/revisions/1/revert", {"reason": "bad extraction"},
                          headers={"If-Match": '"3"'})
    assert response.status_code == 200, response.content
    assert response["ETag"] == etag_of("h-3", 4)
    data = response.json()
    assert (data["summary"], data["plan"], data["version"]) == ("v1", ["a"], 4)
    _assert_reverted("h-3", to_version=1, new_version=4, reason="bad extraction", key=write_key[0])
    assert set(Revision.objects.get(session__session_id="h-3", version=4).changed_fields) == {"summary", "plan"}
    assert agent.get("/api/v1/sessions/h-3/context").json() == data  # the next read sees it


def test_revert_needs_a_reason_and_a_version(agent):
    _three_versions("h-4")
    before = counts()
    assert_error(agent.post("/api/v1/sessions/h-4/revisions/1/revert", {}, headers={"If-Match": '"3"'}), 400)
    assert_error(agent.post("/api/v1/sessions/h-4/revisions/1/revert", {"reason": "x"}), 428,
                 "precondition_required")
    assert_error(agent.post("/api/v1/sessions/h-4/revisions/1/revert", {"reason": "x"}, headers={"If-Match": '"2"'}),
                 412, "version_conflict")
    assert_error(agent.post("/api/v1/sessions/h-4/revisions/9/revert", {"reason": "x"}, headers={"If-Match": '"3"'}),
                 404, "not_found")
    assert counts() == before


def test_a_body_version_works_for_revert_too(agent, write_key):
    _three_versions("h-5")
    response = agent.post("/api/v1/sessions/h-5/revisions/2/revert", {"reason": "plan was wrong", "version": 3})
    assert response.status_code == 200, response.content
    assert response["ETag"] == etag_of("h-5", 4)
    assert (response.json()["summary"], response.json()["plan"]) == ("v2", ["a"])
    _assert_reverted("h-5", to_version=2, new_version=4, reason="plan was wrong", key=write_key[0])
    assert Revision.objects.get(session__session_id="h-5", version=4).changed_fields == ["plan"]
