from __future__ import annotations

import pytest

from contexts import services
from contexts.exceptions import InvalidInput, VersionConflict
from contexts.models import Revision, SessionContext
from contexts.services import Actor
from tests.factories import make_session

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tester")


def test_new_session_is_empty_at_version_zero_without_revisions():
    session = make_session("new-1")
    assert session.version == 0
    assert session.is_empty
    assert Revision.objects.filter(session=session).count() == 0


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
    assert SessionContext.objects.get(pk=session.pk).summary == "A"


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
    session = make_session("revert-1", content={"summary": "good"})
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "bad"},
                             source="extraction", actor=Actor.for_model("m"))
    services.snapshot_revert(session=session, to_version=1, expected_version=2, reason="model broke it",
                             actor=ACTOR, source="api")
    session.refresh_from_db()
    assert session.summary == "good" and session.version == 3
    assert Revision.objects.get(session=session, version=3).reason.startswith("Reverted to version 1")


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


def test_session_id_outside_the_allowed_alphabet_is_refused():
    for bad in ["has space", "slash/y", "x" * 256, ""]:
        with pytest.raises(InvalidInput):
            services.session_get_or_create(session_id=bad)
    assert SessionContext.objects.count() == 0


def test_delete_removes_session_with_its_history():
    session = make_session("del-1", content={"summary": "x"})
    services.messages_append(session=session, messages=[{"role": "user", "content": "hi"}])
    services.session_delete(session=session, actor=ACTOR)
    assert not SessionContext.objects.filter(session_id="del-1").exists()
    assert Revision.objects.count() == 0
