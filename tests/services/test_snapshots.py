"""How a snapshot changes: every service ends in snapshot_write, the one versioned write (a conditional UPDATE
on the version, one revision per change); services return the new state and leave the caller's objects alone."""

from __future__ import annotations

import pytest
from django.db import transaction

from contexts import services
from contexts.exceptions import InvalidInput, NotFound, VersionConflict
from contexts.models import Message, Revision, SessionContext
from contexts.services import Actor
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tester")


def test_every_change_increments_version_and_writes_exactly_one_revision():
    session = make_session("v-1")
    services.snapshot_update(session=session, expected_version=0, changes={"summary": "first"},
                             source="api", actor=ACTOR)
    services.snapshot_update(session=session, expected_version=1, changes={"goal": "ship it"},
                             source="staff", actor=Actor(label="user:alice"), reason="fix goal")
    session.refresh_from_db()
    assert session.version == 2
    revisions = list(Revision.objects.filter(session=session).order_by("version"))
    assert [(r.version, r.source, r.actor) for r in revisions] == [
        (1, "api", "tester"), (2, "staff", "user:alice")
    ]
    assert revisions[1].snapshot["summary"] == "first"
    assert revisions[1].snapshot["goal"] == "ship it"
    assert revisions[1].changed_fields == ["goal"]
    assert revisions[1].reason == "fix goal"


def test_stale_version_is_refused_and_changes_nothing():
    session = make_session("stale-1", content={"summary": "kept"})
    with pytest.raises(VersionConflict) as info:
        services.snapshot_update(session=session, expected_version=0, changes={"summary": "lost update"},
                                 source="api", actor=ACTOR)
    assert info.value.status == 412
    assert info.value.details == {"expected_version": 0, "current_version": 1}
    session.refresh_from_db()
    assert session.summary == "kept"
    assert session.version == 1
    assert Revision.objects.filter(session=session).count() == 1


def test_a_second_writer_holding_an_old_instance_cannot_overwrite():
    session = make_session("race-1")
    other_copy = SessionContext.objects.get(pk=session.pk)
    services.snapshot_update(session=session, expected_version=0, changes={"summary": "A"},
                             source="api", actor=ACTOR)
    with pytest.raises(VersionConflict):
        services.snapshot_update(session=other_copy, expected_version=other_copy.version,
                                 changes={"summary": "B"}, source="api", actor=ACTOR)
    stored = SessionContext.objects.get(pk=session.pk)
    assert (stored.summary, stored.version) == ("A", 1)
    assert list(Revision.objects.filter(session=session).values_list("version", "snapshot__summary")) == [(1, "A")]


def test_unchanged_content_writes_no_revision():
    session = make_session("same-1", content={"summary": "same"})
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "same"},
                             source="api", actor=ACTOR)
    session.refresh_from_db()
    assert session.version == 1
    assert Revision.objects.filter(session=session).count() == 1


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"plan": "not a list"}, "plan"),
        ({"plan": ["ok", ""]}, "plan"),
        ({"progress": [3]}, "progress"),
        ({"summary": "x" * 5000}, "summary"),
        ({"plan": [f"step {i}" for i in range(51)]}, "plan"),
        ({"colour": "blue"}, "colour"),
        ({"mode": "chatty"}, "mode"),
    ],
)
def test_invalid_content_is_refused_and_changes_nothing(changes, field):
    session = make_session("bad-1", content={"summary": "before"})
    with pytest.raises(InvalidInput) as info:
        services.snapshot_update(session=session, expected_version=1, changes=changes, source="api", actor=ACTOR)
    assert field in info.value.details["fields"]
    session.refresh_from_db()
    assert (session.summary, session.version) == ("before", 1)


def test_reset_empties_snapshot_keeps_history_and_needs_a_reason():
    session = make_session("reset-1", content={"summary": "s", "goal": "g", "plan": ["a"], "progress": ["a"]})
    with pytest.raises(InvalidInput):
        services.snapshot_reset(session=session, reason="  ", actor=ACTOR)
    services.snapshot_reset(session=session, reason="user asked to forget", actor=ACTOR)
    session.refresh_from_db()
    assert session.is_empty and session.version == 2
    revisions = list(Revision.objects.filter(session=session).order_by("version"))
    assert revisions[0].snapshot["goal"] == "g"
    assert revisions[1].source == "reset"
    assert revisions[1].reason == "user asked to forget"
    assert set(revisions[1].changed_fields) == {"summary", "goal", "plan", "progress"}


def test_revert_restores_an_old_version_as_a_new_revision():
    session = make_session("revert-1", content={"summary": "good", "plan": ["a", "b"]})
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "bad", "plan": ["a"]},
                             source="extraction", actor=Actor.for_model("m"))
    services.snapshot_revert(session=session, to_version=1, expected_version=2, reason="model broke it",
                             actor=ACTOR, source="api")
    session.refresh_from_db()
    assert (session.summary, session.plan, session.version) == ("good", ["a", "b"], 3)
    revisions = list(Revision.objects.filter(session=session).order_by("version")
                     .values_list("version", "source", "actor", "changed_fields"))
    assert revisions == [(1, "api", "test", ["summary", "plan"]), (2, "extraction", "model:m", ["summary", "plan"]),
                         (3, "api", "tester", ["summary", "plan"])]
    revert = Revision.objects.get(session=session, version=3)
    assert revert.reason == "Reverted to version 1: model broke it"
    assert revert.snapshot == Revision.objects.get(session=session, version=1).snapshot


def test_a_revert_to_a_version_that_never_was_or_without_a_reason_changes_nothing():
    session = make_session("revert-2", content={"summary": "good"})
    with pytest.raises(NotFound):
        services.snapshot_revert(session=session, to_version=7, expected_version=1, reason="why", actor=ACTOR,
                                 source="api")
    with pytest.raises(InvalidInput):
        services.snapshot_revert(session=session, to_version=1, expected_version=1, reason=" ", actor=ACTOR,
                                 source="api")
    with pytest.raises(VersionConflict):
        services.snapshot_revert(session=session, to_version=1, expected_version=0, reason="why", actor=ACTOR,
                                 source="api")
    assert SessionContext.objects.get(pk=session.pk).version == 1
    assert Revision.objects.filter(session=session).count() == 1


def test_revisions_are_append_only():
    session = make_session("ro-1", content={"summary": "x"})
    revision = Revision.objects.get(session=session)
    revision.reason = "tampered"
    with pytest.raises(RuntimeError):
        revision.save()


def test_cursor_moves_without_a_new_version_when_content_is_unchanged():
    session = make_session("cur-1", content={"summary": "x"})
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "x"}, source="extraction",
                             actor=ACTOR, cursor_seq=4)
    session.refresh_from_db()
    assert (session.version, session.cursor_seq) == (1, 4)
    assert Revision.objects.filter(session=session).count() == 1


def test_rewind_empties_the_extracted_fields_and_sends_the_cursor_back_to_the_start():
    session = make_session("rewind-1", content={"summary": "s", "goal": "g", "plan": ["a"], "handoff_note": "kept"})
    services.messages_append(session=session, messages=[{"role": "user", "content": "hi"}])
    services.snapshot_update(session=session, expected_version=1, changes={}, source="extraction", actor=ACTOR,
                             cursor_seq=1)

    rewound = services.snapshot_rewind(session=session, actor=ACTOR, reason="new rules")

    stored = SessionContext.objects.get(pk=session.pk)
    assert (stored.summary, stored.goal, stored.plan, stored.handoff_note) == ("", "", [], "kept")
    assert (stored.version, stored.cursor_seq) == (rewound.version, rewound.cursor_seq) == (2, 0)
    revision = Revision.objects.get(session=session, version=2)
    assert (revision.source, revision.reason, revision.changed_fields) == ("reset", "new rules",
                                                                          ["summary", "goal", "plan"])


def test_rewinding_a_summary_mode_session_keeps_the_goal_plan_and_progress_its_runs_never_fill():
    session = make_session("rewind-2", mode="summary", content={"summary": "s", "goal": "Refund order 7",
                                                                "plan": ["Check the order"], "progress": ["Asked"]})
    services.snapshot_rewind(session=session, actor=ACTOR, reason="new rules")
    stored = SessionContext.objects.get(pk=session.pk)
    assert (stored.summary, stored.goal, stored.plan, stored.progress) == ("", "Refund order 7", ["Check the order"],
                                                                           ["Asked"])
    assert Revision.objects.get(session=session, version=2).changed_fields == ["summary"]


# snapshot_write: the one versioned write every service ends in.

def _row(session) -> SessionContext:
    return SessionContext.objects.get(pk=session.pk)


def test_snapshot_write_makes_one_revision_per_change_and_returns_the_row_as_it_now_is():
    session = make_session("w-1", content={"summary": "before"})
    with transaction.atomic():
        written = services.snapshot_write(_row(session), values={"summary": "after", "status": "closed"},
                                          source="staff", actor=ACTOR, reason="why", extra={"cursor_seq": 3})

    stored = _row(session)
    assert (written.version, written.summary, written.status, written.cursor_seq) == (2, "after", "closed", 3)
    assert (stored.version, stored.summary, stored.status, stored.cursor_seq) == (2, "after", "closed", 3)
    assert written.updated_at == stored.updated_at
    revision = Revision.objects.get(session=session, version=2)
    assert (revision.source, revision.actor, revision.reason) == ("staff", "tester", "why")
    assert revision.changed_fields == ["status", "summary"] and revision.snapshot == stored.snapshot()
    assert Revision.objects.filter(session=session).count() == 2


def test_a_stale_row_passed_to_snapshot_write_is_refused_and_writes_nothing():
    session = make_session("w-2", content={"summary": "A"})
    stale = _row(session)
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "B"}, source="api",
                             actor=ACTOR)
    before = _row(session)

    # Each in a transaction of its own, as its callers do (the refusal rolls back the caller's transaction).
    with pytest.raises(VersionConflict) as info, transaction.atomic():
        services.snapshot_write(stale, values={"summary": "C"}, source="api", actor=ACTOR, extra={"cursor_seq": 9})
    with pytest.raises(VersionConflict), transaction.atomic():  # a stale row cannot move other columns either
        services.snapshot_write(stale, values={}, source="api", actor=ACTOR, extra={"cursor_seq": 9})

    assert info.value.details == {"expected_version": 1, "current_version": 2}
    after = _row(session)
    assert (after.summary, after.version, after.cursor_seq, after.updated_at) == ("B", 2, 0, before.updated_at)
    assert list(Revision.objects.filter(session=session).values_list("version", flat=True).order_by("version")) == [
        1, 2]


def test_a_refused_snapshot_write_rolls_back_the_callers_whole_transaction():
    session = make_session("w-3", content={"summary": "A"})
    stale = _row(session)
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "B"}, source="api",
                             actor=ACTOR)

    with pytest.raises(VersionConflict), transaction.atomic():
        services.messages_append(session=session, messages=[{"role": "user", "content": "with the write"}])
        services.snapshot_write(stale, values={"summary": "C"}, source="api", actor=ACTOR)

    assert not Message.objects.filter(session=session).exists()
    assert (_row(session).summary, _row(session).last_message_seq) == ("B", 0)


def test_snapshot_write_with_nothing_changed_writes_nothing(django_assert_num_queries):
    session = make_session("w-4", content={"summary": "same", "plan": ["a"]})
    row = _row(session)

    with django_assert_num_queries(0):
        written = services.snapshot_write(row, values={"summary": "same", "plan": ["a"]}, source="api", actor=ACTOR)

    assert written.version == 1
    stored = _row(session)
    assert (stored.version, stored.updated_at) == (1, row.updated_at)
    assert Revision.objects.filter(session=session).count() == 1


def test_extra_columns_alone_move_without_a_new_version():
    session = make_session("w-5", content={"summary": "same"})
    row = _row(session)
    read_at = row.updated_at

    written = services.snapshot_write(row, values={"summary": "same"}, source="extraction", actor=ACTOR,
                                      extra={"cursor_seq": 5})

    stored = _row(session)
    assert (written.version, written.cursor_seq) == (stored.version, stored.cursor_seq) == (1, 5)
    assert stored.updated_at > read_at  # the read cache's answer carries it
    assert Revision.objects.filter(session=session).count() == 1


# Services return the new state and leave the caller's instance as it was.

def _call(name, session, user):
    person = Actor.for_user(user)
    return {
        "snapshot_update": lambda: services.snapshot_update(session=session, expected_version=1, source="api",
                                                            changes={"summary": "new"}, actor=ACTOR),
        "snapshot_replace": lambda: services.snapshot_replace(session=session, expected_version=1, source="api",
                                                              content={"goal": "new"}, actor=ACTOR),
        "snapshot_reset": lambda: services.snapshot_reset(session=session, reason="forget", actor=ACTOR),
        "snapshot_revert": lambda: services.snapshot_revert(session=session, to_version=1, expected_version=1,
                                                            reason="again", actor=ACTOR, source="api"),
        "snapshot_rewind": lambda: services.snapshot_rewind(session=session, reason="again", actor=ACTOR),
        "handoff_request": lambda: services.handoff_request(session=session, reason="help", actor=ACTOR),
        "handoff_claim": lambda: services.handoff_claim(session=session, actor=person),
        "session_close": lambda: services.session_close(session=session, actor=person),
    }[name]()


@pytest.mark.parametrize("name", ["snapshot_update", "snapshot_replace", "snapshot_reset", "snapshot_revert",
                                  "snapshot_rewind", "handoff_request", "handoff_claim", "session_close"])
def test_a_service_returns_the_new_state_and_leaves_the_callers_instance_as_it_was(name):
    session = make_session(f"ret-{name}", content={"summary": "old", "goal": "old goal"})
    user = make_user("alice", role="support")
    seen = (session.version, session.snapshot(), session.updated_at, session.cursor_seq, session.assignee_id)

    returned = _call(name, session, user)

    assert (session.version, session.snapshot(), session.updated_at, session.cursor_seq,
            session.assignee_id) == seen
    stored = _row(session)
    assert returned is not session
    assert (returned.version, returned.snapshot(), returned.updated_at, returned.assignee_id) == (
        stored.version, stored.snapshot(), stored.updated_at, stored.assignee_id)
    if name != "snapshot_revert":  # reverting to the version it is at changes nothing
        assert stored.version == 2


def test_handing_back_returns_the_new_state_and_leaves_the_callers_instance_as_it_was():
    alice = make_user("alice", role="support")
    session = make_session("ret-release")
    session = services.handoff_claim(session=session, actor=Actor.for_user(alice))

    returned = services.handoff_release(session=session, note="done", actor=Actor.for_user(alice))

    assert (session.status, session.assignee_id, session.version) == ("human", alice.pk, 1)
    assert (returned.status, returned.assignee_id, returned.version) == ("active", None, 2)
    assert _row(session).snapshot() == returned.snapshot()
