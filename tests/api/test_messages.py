"""Posting message batches (creating sessions, idempotency, auto-update) and reading the transcript."""

from __future__ import annotations

import pytest

from contexts.models import ExtractionRun, Message, SessionContext
from tests.api.conftest import assert_error, counts
from tests.factories import make_session

pytestmark = pytest.mark.django_db

TURN = [
    {"role": "user", "content": "Plan my trip", "idempotency_key": "t1-u"},
    {"role": "assistant", "content": "1. Flights 2. Hotel", "idempotency_key": "t1-a"},
]


def test_posting_to_a_new_session_creates_it_and_stores_the_batch(agent):
    response = agent.post("/api/v1/sessions/m-1/messages",
                          {"messages": TURN, "user_id": "u-7", "agent_id": "bot", "mode": "planning"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["session_id"] == "m-1" and body["created"] is True
    assert body["stored"] == [{"seq": 1, "role": "user", "idempotency_key": "t1-u"},
                              {"seq": 2, "role": "assistant", "idempotency_key": "t1-a"}]
    assert body["duplicates"] == 0
    session = SessionContext.objects.get(session_id="m-1")
    assert (session.user_id, session.agent_id, session.mode, session.last_message_seq) == ("u-7", "bot", "planning", 2)
    assert list(session.messages.values_list("seq", "role", "content")) == [
        (1, "user", "Plan my trip"), (2, "assistant", "1. Flights 2. Hotel")]


def test_a_batch_completing_a_turn_queues_an_update(agent, settings):
    settings.SESSIONCTX_AUTO_UPDATE = True
    body = agent.post("/api/v1/sessions/m-2/messages", {"messages": TURN}).json()
    run = ExtractionRun.objects.get(session__session_id="m-2")
    assert body["update"] == {"run_id": str(run.id), "status": "queued"}
    assert run.trigger == "auto"


def test_no_update_when_the_turn_is_not_complete_or_auto_update_is_off(agent, settings):
    settings.SESSIONCTX_AUTO_UPDATE = True
    body = agent.post("/api/v1/sessions/m-3/messages", {"messages": [{"role": "user", "content": "hi"}]}).json()
    assert body["update"] is None
    settings.SESSIONCTX_AUTO_UPDATE = False
    body = agent.post("/api/v1/sessions/m-3/messages", {"messages": [{"role": "assistant", "content": "yo"}]}).json()
    assert body["update"] is None
    assert not ExtractionRun.objects.filter(session__session_id="m-3").exists()


def _transcript(session_id: str) -> list[tuple]:
    return list(Message.objects.filter(session__session_id=session_id).order_by("seq")
                .values_list("seq", "role", "content", "idempotency_key"))


def test_a_retried_batch_stores_nothing_twice(agent):
    agent.post("/api/v1/sessions/m-4/messages", {"messages": TURN})
    stored = _transcript("m-4")
    assert stored == [(1, "user", "Plan my trip", "t1-u"), (2, "assistant", "1. Flights 2. Hotel", "t1-a")]

    again = agent.post("/api/v1/sessions/m-4/messages", {"messages": TURN})

    assert again.status_code == 202, again.content
    body = again.json()
    assert body["stored"] == [] and body["duplicates"] == 2 and body["created"] is False
    assert body["update"] is None
    assert _transcript("m-4") == stored
    assert SessionContext.objects.get(session_id="m-4").last_message_seq == 2
    assert ExtractionRun.objects.filter(session__session_id="m-4").count() == 1


def test_a_key_sent_twice_with_the_same_message_is_stored_once_and_counted_as_a_duplicate(agent):
    agent.post("/api/v1/sessions/m-7/messages", {"messages": TURN})
    response = agent.post("/api/v1/sessions/m-7/messages", {"messages": [
        {"role": "user", "content": "Plan my trip", "idempotency_key": "t1-u"},  # a retry
        {"role": "user", "content": "And a car", "idempotency_key": "t2-u"},
        {"role": "user", "content": "And a car", "idempotency_key": "t2-u"},  # sent twice in one batch
    ]})
    assert response.status_code == 202, response.content
    body = response.json()
    # Three sent: one stored, the retry of t1-u and the second t2-u of the same batch are duplicates.
    assert body["stored"] == [{"seq": 3, "role": "user", "idempotency_key": "t2-u"}] and body["duplicates"] == 2
    assert _transcript("m-7") == [(1, "user", "Plan my trip", "t1-u"), (2, "assistant", "1. Flights 2. Hotel", "t1-a"),
                                  (3, "user", "And a car", "t2-u")]
    assert SessionContext.objects.get(session_id="m-7").last_message_seq == 3


@pytest.mark.parametrize("batch", [
    # A turn counter that started again: t1-u is another message now.
    [{"role": "user", "content": "And a car", "idempotency_key": "t2-u"},
     {"role": "user", "content": "Plan my trip, but cheaper", "idempotency_key": "t1-u"}],
    # The same key for two different messages of one batch.
    [{"role": "user", "content": "And a car", "idempotency_key": "t2-u"},
     {"role": "assistant", "content": "Which dates?", "idempotency_key": "t2-u"}],
], ids=["stored before", "in the batch"])
def test_a_key_already_used_for_another_message_is_refused_and_nothing_of_the_batch_is_stored(agent, batch):
    # Taken for a copy, the second message was dropped without a word.
    agent.post("/api/v1/sessions/m-8/messages", {"messages": TURN})
    before = counts()

    error = assert_error(agent.post("/api/v1/sessions/m-8/messages", {"messages": batch}), 422,
                         "idempotency_key_reused")

    assert error["details"]["fields"] == {"messages": {"1": {"idempotency_key": ["Already used for another message."]}}}
    assert "nothing was stored" in error["message"] and counts() == before
    assert [content for _, _, content, _ in _transcript("m-8")] == ["Plan my trip", "1. Flights 2. Hotel"]


def test_a_batch_over_the_limits_is_refused_in_the_shape_of_every_other_field_error(agent, settings):
    # They said {"messages[1].content": ["Invalid."]} and {"messages": ["Too many."]}, unlike every other field.
    settings.SESSIONCTX_MAX_MESSAGE_CHARS, settings.SESSIONCTX_MAX_MESSAGES_PER_POST = 10, 2
    before = counts()
    long = assert_error(agent.post("/api/v1/sessions/m-9/messages", {"messages": [
        {"role": "user", "content": "short"}, {"role": "user", "content": "far too long"}]}), 400, "invalid")
    many = assert_error(agent.post("/api/v1/sessions/m-9/messages", {"messages": [
        {"role": "user", "content": "a"}] * 3}), 400, "invalid")

    assert long["details"]["fields"] == {"messages": {"1": {"content": ["A string of at most 10 characters."]}}}
    assert many["details"]["fields"] == {"messages": ["At most 2 messages per post."]}
    assert counts() == before


def test_the_transcript_is_in_order_and_pages(reader, agent):
    agent.post("/api/v1/sessions/m-5/messages",
               {"messages": [{"role": "user", "content": f"m{i}"} for i in range(5)]})
    page = reader.get("/api/v1/sessions/m-5/messages?limit=2").json()
    assert [(m["seq"], m["content"]) for m in page["results"]] == [(1, "m0"), (2, "m1")]
    assert set(page["results"][0]) == {"seq", "role", "content", "idempotency_key", "author", "created_at"}
    assert [m["seq"] for m in reader.get(page["next"]).json()["results"]] == [3, 4]
    assert [m["seq"] for m in reader.get("/api/v1/sessions/m-5/messages?after_seq=3").json()["results"]] == [4, 5]
    assert_error(reader.get("/api/v1/sessions/m-5/messages?after_seq=-1"), 400)
    assert_error(reader.get("/api/v1/sessions/nobody/messages"), 404)


@pytest.mark.parametrize("body", [
    {},
    {"messages": []},
    {"messages": "hello"},
    {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "user"}]},
    {"messages": [{"role": "user", "content": 5}]},
    {"messages": [{"role": "user", "content": "x", "extra": 1}]},
    {"messages": [{"role": "user", "content": "x", "idempotency_key": ""}]},
    {"messages": [{"role": "user", "content": "x"}], "mode": "other"},
    {"messages": [{"role": "user", "content": "x"}], "user_id": ["a"]},
    {"messages": [{"role": "user", "content": "x"}], "surprise": True},
    {"messages": [{"role": "user", "content": "x" * 100_001}]},
    {"messages": [{"role": "user", "content": "x"}] * 201},
    [{"role": "user", "content": "x"}],
])
def test_bad_batches_are_400_and_store_nothing_not_even_the_session(agent, body):
    before = counts()
    assert_error(agent.post("/api/v1/sessions/m-bad/messages", body), 400)
    assert counts() == before
    assert not SessionContext.objects.filter(session_id="m-bad").exists()


def test_a_bad_batch_to_an_existing_session_changes_nothing(agent):
    make_session("m-6")
    agent.post("/api/v1/sessions/m-6/messages", {"messages": [{"role": "user", "content": "ok"}]})
    before = counts()
    assert_error(agent.post("/api/v1/sessions/m-6/messages",
                            {"messages": [{"role": "user", "content": "fine"}, {"role": "x", "content": "bad"}]}),
                 400)
    assert counts() == before


def test_idempotency_keys_are_kept_as_sent_and_keys_differing_in_spaces_store_both_messages(agent):
    response = agent.post("/api/v1/sessions/idem-1/messages", {"messages": [
        {"role": "user", "content": "Plan my trip", "idempotency_key": "k"},
        {"role": "assistant", "content": "1. Flights 2. Hotel", "idempotency_key": "k "},
    ]})
    assert response.status_code == 202, response.content
    body = response.json()
    assert [(m["seq"], m["idempotency_key"]) for m in body["stored"]] == [(1, "k"), (2, "k ")]
    assert list(Message.objects.filter(session__session_id="idem-1").order_by("seq")
                .values_list("content", "idempotency_key")) == [("Plan my trip", "k"), ("1. Flights 2. Hotel", "k ")]
    assert ExtractionRun.objects.filter(session__session_id="idem-1").exists()  # the turn ends with the reply
    assert_error(agent.post("/api/v1/sessions/idem-1/messages", {"messages": [
        {"role": "user", "content": "x", "idempotency_key": "   "}]}), 400)
