"""/api/v1/events: an agent follows what happened (handoff changes, staff replies, context versions) from a
cursor, filtered, long-polled, and never misses an event that commits late."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from contexts import services
from contexts.infra import database
from contexts.models import Event
from contexts.services import Actor
from tests.api.conftest import Agent, assert_error
from tests.factories import make_api_key, make_session, make_user

AGENT = Actor.system("key:agent")


def _desk_loop(session_id: str):
    alice = make_user(f"alice-{session_id}", role="support")
    session = services.handoff_request(session=make_session(session_id), reason="refund", actor=AGENT)
    session = services.handoff_claim(session=session, actor=Actor.for_user(alice))
    services.handoff_reply(session=session, content="Refund sent.", actor=Actor.for_user(alice))
    return services.handoff_release(session=session, note="refunded", actor=Actor.for_user(alice))


@pytest.mark.django_db
def test_an_agent_follows_the_feed_page_by_page_and_sees_the_reply_and_the_release(reader):
    _desk_loop("ev-1")
    _desk_loop("ev-other")
    seen, after = [], 0
    while True:
        page = reader.get(f"/api/v1/events?session_id=ev-1&after={after}&limit=2").json()
        seen += page["events"]
        after = page["next_after"]
        if not page["has_more"]:
            break
    assert [e["type"] for e in seen] == ["context.updated", "handoff.requested", "context.updated",
                                         "handoff.taken", "message.staff_reply", "context.updated",
                                         "handoff.released"]
    assert {e["session_id"] for e in seen} == {"ev-1"}
    assert [e["id"] for e in seen] == sorted(e["id"] for e in seen)
    reply = next(e for e in seen if e["type"] == "message.staff_reply")
    assert reply["data"]["content"] == "Refund sent." and reply["data"]["author"] == "alice-ev-1"
    released = seen[-1]
    assert released["data"]["note"] == "refunded" and released["data"]["status"] == "active"
    # Nothing new after the last one: an empty page that keeps the cursor.
    empty = reader.get(f"/api/v1/events?session_id=ev-1&after={after}").json()
    assert empty == {"events": [], "next_after": after, "has_more": False}


@pytest.mark.django_db
def test_types_filter_and_the_transcript_names_the_replys_author(reader):
    _desk_loop("ev-2")
    page = reader.get("/api/v1/events?types=message.staff_reply,handoff.released").json()
    assert [e["type"] for e in page["events"]] == ["message.staff_reply", "handoff.released"]
    transcript = reader.get("/api/v1/sessions/ev-2/messages").json()["results"]
    assert [(m["role"], m["content"], m["author"]) for m in transcript] == [
        ("assistant", "Refund sent.", "alice-ev-2")]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["types=handoff.bogus", "types=a,,b", "after=-1", "limit=0", "limit=501", "wait=-1",
                                   "wait=abc", "session_id=a%20b", "after=x"])
def test_bad_queries_are_400_in_the_error_shape(reader, query):
    assert_error(reader.get(f"/api/v1/events?{query}"), 400)


@pytest.mark.django_db
def test_an_unknown_event_type_is_told_which_are_known(reader):
    response = reader.get("/api/v1/events?types=handoff.request")
    assert_error(response, 400)
    assert "handoff.requested" in str(response.json()["error"]["details"])


@pytest.mark.django_db
def test_the_feed_needs_a_key_with_the_read_scope():
    assert_error(Agent().get("/api/v1/events"), 401)
    _, write_only = make_api_key("write", name="writer")
    assert_error(Agent(write_only).get("/api/v1/events"), 403)


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_answers_as_soon_as_an_event_arrives():
    _, raw = make_api_key("read", "write")
    session = make_session("ev-poll")
    after = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def later():
        time.sleep(0.6)
        services.handoff_request(session=session, reason="a person please", actor=AGENT)
        close_old_connections()

    writer = threading.Thread(target=later)
    started = time.monotonic()
    writer.start()
    page = Agent(raw).get(f"/api/v1/events?after={after}&types=handoff.requested&wait=10").json()
    waited = time.monotonic() - started
    writer.join()
    assert [e["data"]["reason"] for e in page["events"]] == ["a person please"]
    assert 0.5 < waited < 3, waited
    # With nothing coming, the wait is honoured and the answer is empty.
    started = time.monotonic()
    page = Agent(raw).get(f"/api/v1/events?after={page['next_after']}&wait=0.5").json()
    assert page["events"] == [] and 0.45 < time.monotonic() - started < 2


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_during_a_long_poll_gets_no_event_that_happens_after_its_revocation():
    key, raw = make_api_key("read", "write")
    session = make_session("ev-revoked")
    after = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def later():
        time.sleep(0.3)
        services.api_key_revoke(api_key=key)  # an admin revokes the leaked key ...
        time.sleep(0.3)
        services.handoff_request(session=session, reason="secret refund details", actor=AGENT)  # ... then this
        close_old_connections()

    agent = Agent(raw)
    assert agent.get(f"/api/v1/events?after={after}").json()["events"] == []  # the key works
    writer = threading.Thread(target=later)
    writer.start()
    response = agent.get(f"/api/v1/events?after={after}&wait=10")
    writer.join()
    assert b"secret refund details" not in response.content
    assert_error(response, 401, "authentication_failed")
    assert Event.objects.filter(id__gt=after, session__session_id="ev-revoked").exists()


@pytest.mark.django_db(transaction=True)
def test_a_key_that_expires_during_a_long_poll_is_401_key_expired():
    key, raw = services.api_key_create(name="short-lived", scopes=["read"],
                                       expires_at=timezone.now() + timedelta(seconds=1.5))
    session = make_session("ev-expiring")
    after = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def later():
        time.sleep(2.0)
        services.handoff_request(session=session, reason="after the expiry", actor=AGENT)
        close_old_connections()

    agent = Agent(raw)
    assert agent.get(f"/api/v1/events?after={after}").status_code == 200
    writer = threading.Thread(target=later)
    writer.start()
    response = agent.get(f"/api/v1/events?after={after}&wait=10")
    writer.join()
    assert b"after the expiry" not in response.content
    assert_error(response, 401, "key_expired")


@pytest.mark.django_db
def test_a_wait_above_the_servers_bound_waits_the_bound(settings, reader):
    # The Python client's default is 25 s; a server configured to wait less must still answer it.
    settings.SESSIONCTX_EVENTS_MAX_WAIT = 0.3
    started = time.monotonic()
    response = reader.get("/api/v1/events?after=999999&wait=25")
    assert response.status_code == 200 and response.json()["events"] == []
    assert 0.25 < time.monotonic() - started < 3


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_outlasts_the_web_processes_database_deadline(on_postgres, monkeypatch):
    """gunicorn's processes bound a request's database waits (DB_STATEMENT_TIMEOUT + 0.5 s, 5.5 s by default); a
    long-poll waits up to SESSIONCTX_EVENTS_MAX_WAIT (30 s) between its queries, and must not be cut off (a 503)
    once it has waited that long."""
    if not on_postgres:
        pytest.skip("the database deadline is for PostgreSQL")
    monkeypatch.setattr(database, "_request_deadline", 0.5)  # what limit_web_database_waits() sets, shorter
    _, raw = make_api_key("read")
    started = time.monotonic()
    response = Agent(raw).get("/api/v1/events?after=999999&wait=1.5")
    assert response.status_code == 200, response.content
    assert response.json()["events"] == [] and 1.4 < time.monotonic() - started < 4


@pytest.mark.django_db(transaction=True)
def test_an_event_that_commits_late_is_never_skipped_by_a_reader(on_postgres):
    """Two writers: the first draws its event id and commits slowly; the second writes meanwhile. A reader that
    pages with after=<last id seen> must see the first one's event before (or together with) the second's."""
    if not on_postgres:
        pytest.skip("SQLite runs one writer at a time: ids cannot commit out of order")
    slow, fast = make_session("ev-slow"), make_session("ev-fast")
    start = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    inside = threading.Event()

    def slow_writer():
        with transaction.atomic():
            services.event_record(session=slow, type=Event.Type.HANDOFF_REQUESTED, data={"n": 1})
            inside.set()
            time.sleep(1.0)
        connection.close()

    def fast_writer():
        inside.wait()
        services.event_record(session=fast, type=Event.Type.HANDOFF_REQUESTED, data={"n": 2})
        connection.close()

    threads = [threading.Thread(target=slow_writer), threading.Thread(target=fast_writer)]
    for t in threads:
        t.start()
    inside.wait()
    time.sleep(0.5)  # the fast writer has had time to commit, were it not held
    seen_meanwhile = [e.data["n"] for e in Event.objects.filter(id__gt=start).order_by("id")]
    for t in threads:
        t.join()
    after_all = list(Event.objects.filter(id__gt=start).order_by("id").values_list("data", flat=True))
    assert seen_meanwhile == [], "an event became visible while an earlier id was still uncommitted"
    assert [d["n"] for d in after_all] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_long_polls_beyond_the_process_share_answer_at_once_and_leave_threads_for_the_rest(settings):
    # Every thread of a web process held by a long-poll left the API, and the liveness probe, waiting up to 30 s.
    settings.SESSIONCTX_EVENTS_WAITING_PER_PROCESS = 1
    _, raw = make_api_key("read", "write")
    after = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    took = {}

    def follow(name: str) -> None:
        started = time.monotonic()
        Agent(raw).get(f"/api/v1/events?after={after}&wait=3")
        took[name] = time.monotonic() - started
        close_old_connections()

    holder = threading.Thread(target=follow, args=("holder",))
    holder.start()
    time.sleep(0.5)  # the holder is waiting now
    started = time.monotonic()
    page = Agent(raw).get(f"/api/v1/events?after={after}&wait=3").json()
    assert page == {"events": [], "next_after": after, "has_more": False}
    assert time.monotonic() - started < 1.5
    holder.join()
    assert took["holder"] >= 2.9  # the one within the share waited as asked
    follow("next")  # and its share is free again once it answered
    assert took["next"] >= 2.9
