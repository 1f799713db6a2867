"""/api/v1/sessions/{id}/locks and the 423 an agent gets for writing a locked field (#18.6)."""

from __future__ import annotations

import pytest

from contexts.models import FieldLock, LockChange
from contexts.services import Actor
from contexts.services.locks import locks_set
from tests.api.conftest import Agent, assert_error, counts
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

PLAN = ["Book flights", "Book a hotel"]


def _locked(session_id: str):
    session = make_session(session_id, content={"goal": "Lisbon in May", "plan": PLAN, "summary": "s"})
    locks_set(session=session, fields=["plan"], reason="Agreed with the customer",
              actor=Actor.for_user(make_user("edna", role="editor")))
    session.refresh_from_db()
    return session


@pytest.mark.parametrize("method", ["patch", "put"])
def test_an_agents_write_to_a_locked_field_is_423_and_changes_nothing(agent, method):
    session = _locked("l-1")
    before = counts()

    response = getattr(agent, method)("/api/v1/sessions/l-1/context", {"plan": ["Only trains"], "goal": "Porto"},
                                      headers={"If-Match": f'"{session.version}"'})

    error = assert_error(response, 423, "locked")
    assert error["details"] == {"locked_fields": ["plan"]}
    session.refresh_from_db()
    assert (session.plan, session.goal, session.version) == (PLAN, "Lisbon in May", 1)
    assert counts() == before


def test_an_agent_may_write_the_other_fields_and_the_locked_value_as_it_is(agent):
    _locked("l-2")
    response = agent.patch("/api/v1/sessions/l-2/context", {"plan": PLAN, "goal": "Porto"},
                           headers={"If-Match": '"1"'})
    assert response.status_code == 200, response.content
    assert (response.json()["goal"], response.json()["plan"]) == ("Porto", PLAN)


def test_a_reset_by_an_agent_that_would_empty_a_locked_field_is_423(agent):
    session = _locked("l-3")
    assert_error(agent.post("/api/v1/sessions/l-3/context/reset", {"reason": "start over"}), 423, "locked")
    session.refresh_from_db()
    assert session.plan == PLAN


def test_a_write_key_locks_and_unlocks_with_a_reason_and_each_change_is_audited(agent):
    make_session("l-4")
    response = agent.put("/api/v1/sessions/l-4/locks", {"fields": ["goal", "plan"], "reason": "Agreed plan"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(lock["field"], lock["reason"]) for lock in body["locks"]] == [("goal", "Agreed plan"),
                                                                            ("plan", "Agreed plan")]
    assert body["locks"][0]["locked_by"].startswith("key:") and body["proposals"] == []
    assert agent.get("/api/v1/sessions/l-4/locks").json()["locks"] == body["locks"]

    unlocked = agent.put("/api/v1/sessions/l-4/locks", {"fields": [], "reason": "done"})
    assert unlocked.json() == {"locks": [], "proposals": []}
    assert not FieldLock.objects.exists()
    assert list(LockChange.objects.order_by("id").values_list("fields", flat=True)) == [["goal", "plan"], []]


def test_a_change_of_locks_based_on_an_old_read_never_undoes_a_lock_an_editor_took_meanwhile(agent):
    make_session("l-stale", content={"goal": "Lisbon in May", "plan": PLAN})
    read = [lock["field"] for lock in agent.get("/api/v1/sessions/l-stale/locks").json()["locks"]]
    assert read == []
    # Meanwhile an editor locks the plan on the staff page.
    locks_set(session=make_session("l-stale"), fields=["plan"], reason="Agreed with the customer",
              actor=Actor.for_user(make_user("edna-l", role="editor")))

    # The agent, from what it read, locks the goal: with its read as the precondition, nothing changes.
    stale = agent.put("/api/v1/sessions/l-stale/locks",
                      {"fields": [*read, "goal"], "reason": "the customer's words", "expected_locks": read})
    error = assert_error(stale, 409, "conflict")
    assert error["details"] == {"locked": ["plan"], "shown": []}
    assert list(FieldLock.objects.values_list("field", flat=True)) == ["plan"]

    again = agent.put("/api/v1/sessions/l-stale/locks",
                      {"fields": ["goal", "plan"], "reason": "the customer's words", "expected_locks": ["plan"]})
    assert again.status_code == 200 and [lock["field"] for lock in again.json()["locks"]] == ["goal", "plan"]
    assert_error(agent.put("/api/v1/sessions/l-stale/locks", {"fields": [], "reason": "x",
                                                              "expected_locks": ["budget"]}), 400, "invalid")


def test_locking_needs_a_reason_and_a_lockable_field(agent):
    make_session("l-5")
    refused = assert_error(agent.put("/api/v1/sessions/l-5/locks", {"fields": ["plan"]}), 400)
    assert "reason" in refused["details"]["fields"]
    assert_error(agent.put("/api/v1/sessions/l-5/locks", {"fields": ["plan"], "reason": "  "}), 400)
    assert_error(agent.put("/api/v1/sessions/l-5/locks", {"fields": ["handoff_note"], "reason": "x"}), 400)
    assert not FieldLock.objects.exists() and not LockChange.objects.exists()


def test_a_read_key_and_no_key_cannot_lock(reader):
    make_session("l-6")
    assert_error(reader.put("/api/v1/sessions/l-6/locks", {"fields": ["plan"], "reason": "x"}), 403)
    assert_error(Agent().put("/api/v1/sessions/l-6/locks", {"fields": ["plan"], "reason": "x"}), 401)
    assert not FieldLock.objects.exists()
