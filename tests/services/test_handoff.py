"""A person takes a conversation over and hands it back: each status change is a new version with its revision,
plus a handoff event; refusals change nothing."""

from __future__ import annotations

import pytest

from contexts import services
from contexts.exceptions import InvalidInput, StateConflict
from contexts.models import HandoffEvent, Revision, SessionContext
from contexts.services import Actor
from contexts.snapshot import NOTE_MAX_CHARS, REASON_MAX_CHARS
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

AGENT = Actor.system("key:agent")


def _events(session) -> list[tuple[str, str]]:
    return list(HandoffEvent.objects.filter(session_id=session.pk).order_by("id").values_list("kind", "actor"))


def _stored(session) -> SessionContext:
    return SessionContext.objects.get(pk=session.pk)


def test_handoff_lifecycle_writes_revisions_and_events_with_the_person_as_actor():
    session = make_session("h-1", content={"summary": "needs refund"})
    alice = make_user("alice", role="support")
    session = services.handoff_request(session=session, reason="refund", actor=AGENT)
    assert session.status == "handoff_requested" and session.handoff_requested_at is not None
    assert session.handoff_reason == "refund"
    session = services.handoff_claim(session=session, actor=Actor.for_user(alice))
    assert session.status == "human" and session.assignee == alice
    services.handoff_add_note(session=session, note="called the bank", actor=Actor.for_user(alice))
    session = services.handoff_release(session=session, note="refund issued", actor=Actor.for_user(alice))

    stored = _stored(session)
    assert (stored.status, stored.assignee, stored.handoff_reason, stored.handoff_requested_at) == (
        "active", None, "", None)
    assert "alice" in stored.handoff_note and "refund issued" in stored.handoff_note
    assert session.version == stored.version == 4 and session.handoff_note == stored.handoff_note
    assert _events(session) == [("requested", "key:agent"), ("claimed", "user:alice"), ("note", "user:alice"),
                                ("released", "user:alice")]
    assert HandoffEvent.objects.get(session=session, kind="note").note == "called the bank"
    revs = Revision.objects.filter(session=session, source="handoff").order_by("version")
    assert [(r.version, r.snapshot["status"]) for r in revs] == [(2, "handoff_requested"), (3, "human"), (4, "active")]
    assert revs.last().actor_user == alice and revs.last().reason == "refund issued"
    assert revs.last().changed_fields == ["status", "handoff_note"]


def test_asking_twice_is_the_same_request():
    session = make_session("h-2")
    first = services.handoff_request(session=session, reason="help", actor=AGENT)
    again = services.handoff_request(session=session, reason="help, please", actor=AGENT)

    assert again.version == first.version == 1
    assert _stored(session).handoff_reason == "help"
    assert _events(session) == [("requested", "key:agent")]
    assert Revision.objects.filter(session=session).count() == 1


def test_a_request_for_a_conversation_a_person_owns_is_refused_and_changes_nothing():
    session = make_session("h-3")
    alice = make_user("alice", role="support")
    services.handoff_claim(session=session, actor=Actor.for_user(alice))

    with pytest.raises(StateConflict):
        services.handoff_request(session=session, reason="help", actor=AGENT)

    stored = _stored(session)
    assert (stored.status, stored.version, stored.assignee) == ("human", 1, alice)
    assert _events(session) == [("claimed", "user:alice")]


@pytest.mark.parametrize("reason", ["", "   ", "x" * (REASON_MAX_CHARS + 1)], ids=["empty", "blank", "too-long"])
def test_a_request_without_a_usable_reason_is_refused(reason):
    session = make_session("h-4")
    with pytest.raises(InvalidInput):
        services.handoff_request(session=session, reason=reason, actor=AGENT)
    assert (_stored(session).status, _stored(session).version) == ("active", 0)
    assert _events(session) == []


def test_a_second_person_cannot_take_a_taken_handoff():
    session = make_session("h-5")
    alice, bob = make_user("alice", role="support"), make_user("bob", role="support")
    services.handoff_request(session=session, reason="help", actor=AGENT)
    services.handoff_claim(session=session, actor=Actor.for_user(alice))
    stale_copy = SessionContext.objects.get(pk=session.pk)
    with pytest.raises(StateConflict) as info:
        services.handoff_claim(session=stale_copy, actor=Actor.for_user(bob))
    assert info.value.code == "already_taken" and info.value.details["assignee"] == "alice"
    stored = _stored(session)
    assert (stored.assignee, stored.version) == (alice, 2)
    assert _events(session) == [("requested", "key:agent"), ("claimed", "user:alice")]


def test_taking_a_conversation_one_already_owns_changes_nothing():
    session = make_session("h-6")
    alice = make_user("alice", role="support")
    first = services.handoff_claim(session=session, actor=Actor.for_user(alice))
    again = services.handoff_claim(session=session, actor=Actor.for_user(alice))
    assert again.version == first.version == 1
    assert _events(session) == [("claimed", "user:alice")]


def test_only_a_taken_conversation_can_be_handed_back():
    session = make_session("h-7", content={"summary": "kept"})
    with pytest.raises(StateConflict):
        services.handoff_release(session=session, note="", actor=Actor.system("x"))
    stored = _stored(session)
    assert (stored.status, stored.version, stored.handoff_note) == ("active", 1, "")
    assert _events(session) == []


def test_closing_ends_the_handoff_and_closing_again_changes_nothing():
    session = make_session("h-8")
    alice = make_user("alice", role="support")
    services.handoff_claim(session=session, actor=Actor.for_user(alice))

    closed = services.session_close(session=session, actor=Actor.for_user(alice), note="resolved")
    again = services.session_close(session=session, actor=Actor.for_user(alice))

    stored = _stored(session)
    assert (stored.status, stored.assignee, stored.version) == ("closed", None, 2)
    assert closed.version == again.version == 2
    # Closed meanwhile by someone else, a close with a note would drop the note without a word: refused.
    with pytest.raises(StateConflict, match="your note was not added"):
        services.session_close(session=session, actor=Actor.for_user(alice), note="called back, all good")
    assert _events(session) == [("claimed", "user:alice"), ("closed", "user:alice")]
    assert Revision.objects.get(session=session, version=2).reason == "resolved"
    with pytest.raises(StateConflict):
        services.handoff_claim(session=session, actor=Actor.for_user(alice))


@pytest.mark.parametrize("note", ["", "  ", "x" * (NOTE_MAX_CHARS + 1)], ids=["empty", "blank", "too-long"])
def test_an_unusable_note_is_refused(note):
    session = make_session("h-9")
    with pytest.raises(InvalidInput):
        services.handoff_add_note(session=session, note=note, actor=AGENT)
    assert _events(session) == []


def test_a_note_is_for_staff_only_and_makes_no_version():
    session = make_session("h-10", content={"summary": "s"})
    event = services.handoff_add_note(session=session, note="  called back  ", actor=AGENT)
    assert (event.kind, event.note) == ("note", "called back")
    assert _stored(session).version == 1 and Revision.objects.filter(session=session).count() == 1

