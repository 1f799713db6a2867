"""The transcript: messages_append stores batches in order, once each; messages_post is an agent's whole post
(the session created if needed, the batch stored, a context update queued when the batch completes a turn)."""

from __future__ import annotations

import threading

import pytest

from contexts import services
from contexts.exceptions import InvalidInput
from contexts.models import ExtractionRun, Message, SessionContext
from tests.concurrency import once_before, one_queued_behind_the_other
from tests.factories import make_session

pytestmark = pytest.mark.django_db

TURN = [{"role": "user", "content": "Can you move my dentist appointment?", "idempotency_key": "t1-u"},
        {"role": "assistant", "content": "Moved to Friday at 10:00.", "idempotency_key": "t1-a"}]


def _stored(session) -> list[tuple]:
    return list(Message.objects.filter(session_id=session.pk).order_by("seq")
                .values_list("seq", "role", "content", "idempotency_key"))


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
    first = services.messages_append(session=session, messages=TURN)
    again = services.messages_append(session=session, messages=TURN)
    assert len(first.stored) == 2 and first.completes_turn
    assert again.stored == [] and not again.completes_turn
    assert [m.pk for m in again.duplicates] == [m.pk for m in first.stored]
    assert _stored(session) == [(1, "user", TURN[0]["content"], "t1-u"), (2, "assistant", TURN[1]["content"], "t1-a")]
    assert SessionContext.objects.get(pk=session.pk).last_message_seq == 2


def test_duplicate_keys_inside_one_batch_store_once_and_take_one_sequence_number():
    session = make_session("m-3")
    result = services.messages_append(session=session, messages=[
        {"role": "user", "content": "hi", "idempotency_key": "same"},
        {"role": "user", "content": "hi", "idempotency_key": "same"},
        {"role": "assistant", "content": "hello"},
    ])
    assert [m.seq for m in result.stored] == [1, 2]
    assert _stored(session) == [(1, "user", "hi", "same"), (2, "assistant", "hello", None)]
    assert SessionContext.objects.get(pk=session.pk).last_message_seq == 2


@pytest.mark.parametrize("messages", [[], [{"role": "robot", "content": "x"}], [{"role": "user", "content": 5}],
                                      [{"role": "user", "content": "x", "extra": 1}], "nope",
                                      [{"role": "user", "content": "x", "idempotency_key": ""}]])
def test_bad_messages_are_refused_and_nothing_is_stored(messages):
    session = make_session("m-4")
    with pytest.raises(InvalidInput):
        services.messages_append(session=session, messages=messages)
    assert Message.objects.count() == 0
    assert SessionContext.objects.get(pk=session.pk).last_message_seq == 0


def test_one_bad_message_refuses_the_whole_batch():
    session = make_session("m-5")
    with pytest.raises(InvalidInput) as info:
        services.messages_append(session=session, messages=[TURN[0], {"role": "assistant", "content": None}])
    assert list(info.value.details["fields"]["messages"]["1"]) == ["content"]
    assert _stored(session) == []


def test_a_message_over_the_configured_size_is_refused(settings):
    settings.SESSIONCTX_MAX_MESSAGE_CHARS = 10
    session = make_session("m-6")
    with pytest.raises(InvalidInput):
        services.messages_append(session=session, messages=[{"role": "user", "content": "x" * 11}])
    services.messages_append(session=session, messages=[{"role": "user", "content": "x" * 10}])
    assert _stored(session) == [(1, "user", "x" * 10, None)]


# messages_post: the agent's post, with the auto-update rule.

def test_posting_a_turn_creates_the_session_stores_the_batch_and_queues_one_update(
        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as sends:
        result = services.messages_post(session_id="post-1", messages=TURN, mode="summary", user_id="u-7")

    session = SessionContext.objects.get(session_id="post-1")
    assert result.created and result.session.pk == session.pk
    assert (session.mode, session.user_id, session.version, session.last_message_seq) == ("summary", "u-7", 0, 2)
    assert [m.seq for m in result.appended.stored] == [1, 2]
    assert _stored(session) == [(1, "user", TURN[0]["content"], "t1-u"), (2, "assistant", TURN[1]["content"], "t1-a")]
    run = ExtractionRun.objects.get(session=session)
    assert result.update.pk == run.pk
    assert (run.status, run.trigger) == ("queued", "auto") and run.enqueued_at is not None

    for callback in sends:  # the commit: only now is the update sent (and, with no broker, run here)
        callback()
    run.refresh_from_db()
    assert run.status == "succeeded" and run.first_seq == 1 and run.last_seq == 2, run.error


def test_the_queued_update_runs_once_committed_and_takes_the_turn_into_the_snapshot(
        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = services.messages_post(session_id="post-2", messages=TURN, mode="summary")

    run = ExtractionRun.objects.get(pk=result.update.pk)
    session = SessionContext.objects.get(session_id="post-2")
    assert run.status == "succeeded" and run.extractor == "offline", run.error
    assert (session.version, session.cursor_seq) == (1, 2) and "Friday" in session.summary


@pytest.mark.parametrize("batch", [[TURN[0]], [TURN[1], {"role": "user", "content": "And the hygienist?"}]],
                         ids=["user-only", "ends-with-user"])
def test_a_batch_that_does_not_end_with_the_assistants_reply_queues_nothing(batch):
    result = services.messages_post(session_id="post-3", messages=batch)

    assert result.update is None and len(result.appended.stored) == len(batch)
    assert not ExtractionRun.objects.exists()


def test_with_auto_update_off_a_completed_turn_queues_nothing(settings):
    settings.SESSIONCTX_AUTO_UPDATE = False

    result = services.messages_post(session_id="post-4", messages=TURN)

    assert result.update is None and result.appended.completes_turn
    assert Message.objects.filter(session__session_id="post-4").count() == 2
    assert not ExtractionRun.objects.exists()


def test_a_retried_post_stores_nothing_twice_and_queues_no_second_update():
    first = services.messages_post(session_id="post-5", messages=TURN)
    again = services.messages_post(session_id="post-5", messages=TURN)

    assert not again.created and again.session.pk == first.session.pk
    assert again.appended.stored == [] and len(again.appended.duplicates) == 2 and again.update is None
    assert Message.objects.filter(session=first.session).count() == 2
    assert ExtractionRun.objects.filter(session=first.session).count() == 1


def test_turns_posted_while_an_update_is_queued_collapse_into_it():
    first = services.messages_post(session_id="post-6", messages=TURN)
    second = services.messages_post(session_id="post-6", messages=[
        {"role": "user", "content": "And the hygienist?"}, {"role": "assistant", "content": "Friday 10:45."}])

    assert second.update.pk == first.update.pk
    assert list(ExtractionRun.objects.values_list("status", flat=True)) == ["queued"]
    assert SessionContext.objects.get(session_id="post-6").last_message_seq == 4


@pytest.mark.parametrize("messages", [[], [{"role": "robot", "content": "x"}],
                                      [TURN[0], {"role": "assistant", "content": 5}]])
def test_a_refused_post_leaves_no_session_behind(messages):
    with pytest.raises(InvalidInput):
        services.messages_post(session_id="post-refused", messages=messages, mode="planning", user_id="u-1")

    assert not SessionContext.objects.filter(session_id="post-refused").exists()
    assert not Message.objects.exists() and not ExtractionRun.objects.exists()


def test_a_post_with_a_bad_session_id_or_owner_is_refused_and_creates_nothing():
    with pytest.raises(InvalidInput):
        services.messages_post(session_id="has space", messages=TURN)
    with pytest.raises(InvalidInput):
        services.messages_post(session_id="post-7", messages=TURN, user_id="u" * 256)
    assert not SessionContext.objects.exists() and not Message.objects.exists()


def test_a_post_to_an_existing_session_fills_in_unknown_owners_and_keeps_known_ones():
    make_session("post-8", mode="planning", user_id="u-1")

    result = services.messages_post(session_id="post-8", messages=[TURN[0]], mode="summary", user_id="u-2",
                                    agent_id="agent-9")

    session = SessionContext.objects.get(session_id="post-8")
    assert not result.created
    assert (session.mode, session.user_id, session.agent_id) == ("planning", "u-1", "agent-9")
    assert (result.session.user_id, result.session.agent_id) == ("u-1", "agent-9")


# Concurrency on PostgreSQL: another transaction holds the session's row while a post comes in.

@pytest.mark.django_db(transaction=True)
def test_a_post_that_meets_the_sessions_erasure_stores_its_batch_in_a_new_session(on_postgres):
    if not on_postgres:
        pytest.skip("SQLite has no row locks: a post's IMMEDIATE transaction cannot interleave with an erasure")
    from django.db import transaction

    from contexts.services import Actor
    from contexts.services.snapshots import session_locked

    session = make_session("post-erased")
    services.messages_append(session=session, messages=[{"role": "user", "content": "old"}])
    held, erase = threading.Event(), threading.Event()

    def eraser():
        with transaction.atomic():
            session_locked(session)  # as any writer (here: the erasure) holding the row
            held.set()
            erase.wait(10)
            services.session_delete(session=session, actor=Actor.system("test"))

    outcome: dict = {}

    def poster():
        try:
            outcome["result"] = services.messages_post(session_id="post-erased", messages=TURN)
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            outcome["error"] = exc

    one_queued_behind_the_other(eraser, poster, holding=held, release=erase)

    # Ordered after the erasure, the post behaves as a post to an unknown session id: it creates one.
    assert "error" not in outcome, repr(outcome.get("error"))
    fresh = SessionContext.objects.get(session_id="post-erased")
    assert fresh.pk != session.pk and outcome["result"].session.pk == fresh.pk
    assert _stored(fresh) == [(1, "user", TURN[0]["content"], "t1-u"), (2, "assistant", TURN[1]["content"], "t1-a")]
    assert fresh.last_message_seq == 2


@pytest.mark.django_db(transaction=True)
def test_a_post_filling_in_owners_of_a_session_erased_meanwhile_stores_its_batch_in_a_new_session(on_postgres):
    if not on_postgres:
        pytest.skip("SQLite: the post's IMMEDIATE transaction keeps the erasure out until it commits")
    from contexts.services import Actor

    session = make_session("post-erased-owners")

    def owners_written(sql: str) -> bool:
        return sql.startswith("UPDATE") and "contexts_sessioncontext" in sql and "user_id" in sql

    def erase():  # a user's erasure or retention, in another process
        services.session_delete(session=session, actor=Actor.system("test"))

    with once_before(owners_written, erase) as erased:
        result = services.messages_post(session_id="post-erased-owners", messages=TURN, user_id="u-9")

    assert erased
    fresh = SessionContext.objects.get(session_id="post-erased-owners")
    assert fresh.pk != session.pk and result.session.pk == fresh.pk and fresh.user_id == "u-9"
    assert _stored(fresh) == [(1, "user", TURN[0]["content"], "t1-u"), (2, "assistant", TURN[1]["content"], "t1-a")]
