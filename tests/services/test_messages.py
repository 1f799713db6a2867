from __future__ import annotations

import pytest

from contexts import services
from contexts.exceptions import InvalidInput, StateConflict
from contexts.models import HandoffEvent, Message, Revision
from contexts.services import Actor
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db


def test_messages_get_consecutive_sequence_numbers_across_batches():
    session = make_session("m-1")
    services.messages_append(session=session, messages=[{"role": "user", "content": "a"},
                                                        {"role": "assistant", "content": "b"}])
    result = services.messages_append(session=session, messages=[{"role": "user", "content": "c"}])
    assert [m.seq for m in result.stored] == [3]
    assert list(Message.objects.filter(session=session).values_list("seq", "content")) == [
        (1, "a"), (2, "b"), (3, "c")
    ]
    session.refresh_from_db()
    assert session.last_message_seq == 3 and session.cursor_seq == 0


def test_a_retried_batch_with_the_same_keys_stores_nothing_twice():
    session = make_session("m-2")
    batch = [{"role": "user", "content": "hi", "idempotency_key": "k1"},
             {"role": "assistant", "content": "hello", "idempotency_key": "k2"}]
    first = services.messages_append(session=session, messages=batch)
    again = services.messages_append(session=session, messages=batch)
    assert len(first.stored) == 2 and first.completes_turn
    assert again.stored == [] and len(again.duplicates) == 2 and not again.completes_turn
    assert Message.objects.filter(session=session).count() == 2


def test_duplicate_keys_inside_one_batch_store_once():
    session = make_session("m-3")
    result = services.messages_append(session=session, messages=[
        {"role": "user", "content": "hi", "idempotency_key": "same"},
        {"role": "user", "content": "hi", "idempotency_key": "same"},
    ])
    assert len(result.stored) == 1


@pytest.mark.parametrize("messages", [[], [{"role": "robot", "content": "x"}], [{"role": "user", "content": 5}],
                                      [{"role": "user", "content": "x", "extra": 1}], "nope"])
def test_bad_messages_are_refused_and_nothing_is_stored(messages):
    session = make_session("m-4")
    with pytest.raises(InvalidInput):
        services.messages_append(session=session, messages=messages)
    assert Message.objects.count() == 0


def test_handoff_lifecycle_writes_revisions_and_events_with_the_person_as_actor():
    session = make_session("h-1", content={"summary": "needs refund"})
    alice = make_user("alice", role="support")
    session = services.handoff_request(session=session, reason="refund", actor=Actor.system("key:agent"))
    assert session.status == "handoff_requested" and session.handoff_requested_at is not None
    session = services.handoff_claim(session=session, actor=Actor.for_user(alice))
    assert session.status == "human" and session.assignee == alice
    services.handoff_add_note(session=session, note="called the bank", actor=Actor.for_user(alice))
    services.handoff_release(session=session, note="refund issued", actor=Actor.for_user(alice))
    session.refresh_from_db()
    assert session.status == "active" and session.assignee is None
    assert "alice" in session.handoff_note and "refund issued" in session.handoff_note
    kinds = list(HandoffEvent.objects.filter(session=session).values_list("kind", "actor"))
    assert kinds == [("requested", "key:agent"), ("claimed", "user:alice"), ("note", "user:alice"),
                     ("released", "user:alice")]
    revs = Revision.objects.filter(session=session, source="handoff").order_by("version")
    assert [r.snapshot["status"] for r in revs] == ["handoff_requested", "human", "active"]
    assert revs.last().actor_user == alice


def test_a_second_person_cannot_take_a_taken_handoff():
    session = make_session("h-2")
    alice, bob = make_user("alice", role="support"), make_user("bob", role="support")
    services.handoff_request(session=session, reason="help", actor=Actor.system("agent"))
    services.handoff_claim(session=session, actor=Actor.for_user(alice))
    stale_copy = type(session).objects.get(pk=session.pk)
    with pytest.raises(StateConflict) as info:
        services.handoff_claim(session=stale_copy, actor=Actor.for_user(bob))
    assert info.value.details["assignee"] == "alice"
    session.refresh_from_db()
    assert session.assignee == alice


def test_only_a_taken_conversation_can_be_handed_back():
    session = make_session("h-3")
    with pytest.raises(StateConflict):
        services.handoff_release(session=session, note="", actor=Actor.system("x"))
