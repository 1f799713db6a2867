"""The handoff desk: while a person owns a conversation only they answer, hand back or close; an editor may take
it over (recorded); replies are messages of the conversation with their author; every change is on the feed."""

from __future__ import annotations

import pytest

from contexts import selectors, services
from contexts.exceptions import ApplicationError, InvalidInput, StateConflict
from contexts.models import Event, ExtractionRun, HandoffEvent, Message, Project, Revision, SessionContext
from contexts.services import Actor
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

AGENT = Actor.system("key:agent")


def _taken_by(user, session_id="desk-1"):
    session = make_session(session_id, content={"summary": "wants a refund"})
    session = services.handoff_request(session=session, reason="refund", actor=AGENT)
    return services.handoff_claim(session=session, actor=Actor.for_user(user))


def _feed(session) -> list[str]:
    return list(Event.objects.filter(session_id=session.pk).order_by("id").values_list("type", flat=True))


def _counts(session) -> tuple[int, int, int, int]:
    return (SessionContext.objects.get(pk=session.pk).version, Revision.objects.filter(session_id=session.pk).count(),
            Message.objects.filter(session_id=session.pk).count(), Event.objects.filter(session_id=session.pk).count())


def test_only_the_owner_answers_hands_back_or_closes_and_a_refusal_names_them_and_changes_nothing():
    alice, bob = make_user("alice", role="support"), make_user("bob", role="support")
    session = _taken_by(alice)
    before = _counts(session)
    for attempt in (
        lambda: services.handoff_reply(session=session, content="Hi, Bob here", actor=Actor.for_user(bob)),
        lambda: services.handoff_release(session=session, note="done", actor=Actor.for_user(bob)),
        lambda: services.session_close(session=session, actor=Actor.for_user(bob)),
    ):
        with pytest.raises(StateConflict) as refused:
            attempt()
        assert refused.value.code == "not_owner" and refused.value.status == 409
        assert "alice" in refused.value.message and refused.value.details == {"assignee": "alice"}
    assert _counts(session) == before
    assert SessionContext.objects.get(pk=session.pk).assignee == alice


def test_a_reply_is_an_assistant_message_by_the_person_and_an_event_with_its_text():
    alice = make_user("alice", role="support")
    session = _taken_by(alice)
    reply = services.handoff_reply(session=session, content="  Your refund is on its way.  ",
                                   actor=Actor.for_user(alice))
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.role, stored.content, stored.author, stored.seq) == ("assistant", "Your refund is on its way.",
                                                                       alice, 1)
    event = Event.objects.filter(session_id=session.pk, type=Event.Type.STAFF_REPLY).get()
    assert event.data["content"] == "Your refund is on its way." and event.data["author"] == "alice"
    assert event.data["seq"] == 1
    # The reply is part of the transcript, but the snapshot itself did not change.
    assert SessionContext.objects.get(pk=session.pk).last_message_seq == 1


def test_a_reply_needs_a_taken_conversation_and_some_text():
    alice = make_user("alice", role="support")
    waiting = services.handoff_request(session=make_session("desk-2"), reason="help", actor=AGENT)
    with pytest.raises(StateConflict) as refused:
        services.handoff_reply(session=waiting, content="hello", actor=Actor.for_user(alice))
    assert refused.value.code == "not_taken"
    taken = services.handoff_claim(session=waiting, actor=Actor.for_user(alice))
    with pytest.raises(InvalidInput):
        services.handoff_reply(session=taken, content="   ", actor=Actor.for_user(alice))
    assert not Message.objects.filter(session_id=waiting.pk).exists()


def test_an_editor_takes_over_from_the_owner_and_the_feed_and_timeline_say_from_whom():
    alice, erin = make_user("alice", role="support"), make_user("erin", role="editor")
    session = _taken_by(alice)
    with pytest.raises(StateConflict):
        services.handoff_claim(session=session, actor=Actor.for_user(erin))  # a plain Take still refuses
    version = session.version
    session = services.handoff_take_over(session=session, actor=Actor.for_user(erin))
    assert session.assignee == erin and session.status == "human"
    # The context's answer names its owner, so a new owner is a new version (a client's ETag of alice's answer
    # must not get a 304), with its revision and its context.updated event.
    assert session.version == version + 1
    assert Revision.objects.get(session_id=session.pk, version=session.version).changed_fields == ["assignee"]
    updated, event = Event.objects.filter(session_id=session.pk).order_by("-id")[:2][::-1]
    assert (updated.type, updated.data["version"], updated.data["changed_fields"]) == (
        Event.Type.CONTEXT_UPDATED, session.version, ["assignee"])
    assert event.type == Event.Type.HANDOFF_TAKEN_OVER and event.data["version"] == session.version
    assert (event.data["previous_assignee"], event.data["assignee"]) == ("alice", "erin")
    last = HandoffEvent.objects.filter(session_id=session.pk).order_by("-id").first()
    assert (last.actor, last.note) == ("user:erin", "Taken over from alice")
    # Now alice is the one refused.
    with pytest.raises(StateConflict):
        services.handoff_release(session=session, note="", actor=Actor.for_user(alice))


def test_support_staff_cannot_take_over_from_someone_else():
    alice, bob = make_user("alice", role="support"), make_user("bob", role="support")
    session = _taken_by(alice)
    before = _counts(session)
    with pytest.raises(ApplicationError) as refused:
        services.handoff_take_over(session=session, actor=Actor.for_user(bob))
    assert refused.value.status == 403
    assert _counts(session) == before


def test_every_change_is_on_the_feed_in_order_with_the_new_version():
    alice = make_user("alice", role="support")
    session = _taken_by(alice)
    services.handoff_reply(session=session, content="On it.", actor=Actor.for_user(alice))
    released = services.handoff_release(session=session, note="refund issued", actor=Actor.for_user(alice))
    assert _feed(session) == [
        "context.updated",  # the content make_session wrote (version 1)
        "context.updated", "handoff.requested", "context.updated", "handoff.taken", "message.staff_reply",
        "context.updated", "handoff.released",
    ]
    versions = [e.data["version"] for e in Event.objects.filter(session_id=session.pk, type="context.updated")]
    assert versions == [1, 2, 3, 4] and released.version == 4
    note = Event.objects.get(session_id=session.pk, type="handoff.released").data
    assert note["note"] == "refund issued" and "refund issued" in note["handoff_note"]
    assert [e.id for e in selectors.events_after(project=Project.default(), after=0, session_id="desk-1")] == sorted(
        Event.objects.filter(session_id=session.pk).values_list("id", flat=True))


def test_turns_posted_while_a_person_owns_it_queue_no_update_until_it_is_handed_back(settings):
    settings.SESSIONCTX_AUTO_UPDATE = True
    alice = make_user("alice", role="support")
    session = _taken_by(alice)
    turn = [{"role": "user", "content": "Any news?"}, {"role": "assistant", "content": "Let me check."}]
    posted = services.messages_post(session_id=session.session_id, messages=turn)
    assert posted.update is None and not ExtractionRun.objects.filter(session_id=session.pk).exists()
    services.handoff_reply(session=session, content="Refund sent today.", actor=Actor.for_user(alice))
    services.handoff_release(session=session, note="refunded", actor=Actor.for_user(alice))
    run = ExtractionRun.objects.get(session_id=session.pk)
    assert run.trigger == "handback"


def test_with_extraction_while_human_on_turns_still_queue_updates(settings):
    settings.SESSIONCTX_AUTO_UPDATE = True
    settings.SESSIONCTX_EXTRACT_WHILE_HUMAN = True
    session = _taken_by(make_user("alice", role="support"))
    turn = [{"role": "user", "content": "Any news?"}, {"role": "assistant", "content": "Let me check."}]
    assert services.messages_post(session_id=session.session_id, messages=turn).update is not None


def test_old_events_are_purged_after_the_retention(settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.SESSIONCTX_EVENT_RETENTION_DAYS = 7
    session = make_session("desk-3", content={"summary": "x"})
    Event.objects.filter(session_id=session.pk).update(created_at=timezone.now() - timedelta(days=8))
    services.handoff_request(session=session, reason="help", actor=AGENT)
    assert services.events_purge() == 1
    assert _feed(session) == ["context.updated", "handoff.requested"]  # the request's version and itself


def test_a_backlog_of_old_events_is_purged_in_batches_each_its_own_transaction(settings):
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    settings.SESSIONCTX_EVENT_RETENTION_DAYS, settings.SESSIONCTX_DELETE_BATCH_SIZE = 7, 4
    session = make_session("desk-4", content={"summary": "x"})
    for n in range(10):
        services.event_record(session=session, type=Event.Type.CONTEXT_UPDATED, data={"version": n})
    Event.objects.filter(session_id=session.pk).update(created_at=timezone.now() - timedelta(days=8))
    old = Event.objects.filter(session_id=session.pk).count()
    kept = services.event_record(session=session, type=Event.Type.CONTEXT_UPDATED, data={"version": 99})

    with CaptureQueriesContext(connection) as queries:
        assert services.events_purge() == old
    # A batch of 4 at a time, each its own delete, not one delete of the whole backlog.
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE FROM") and "_event" in
               q["sql"].split("WHERE")[0]]
    assert len(deletes) == -(-old // 4)
    assert list(Event.objects.filter(session_id=session.pk)) == [kept]
