"""Update policies through the API (#18.5): set per session by PUT, and reads that ask for freshness."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import close_old_connections
from django.utils import timezone

from contexts import services
from contexts.infra import database
from contexts.models import ExtractionRun, Message, SessionContext
from contexts.services import Actor
from tests.api.conftest import Agent, assert_error

TURN = [{"role": "user", "content": "We fly to Lisbon on 12 May with Ana.", "idempotency_key": "t1-u"},
        {"role": "assistant", "content": "Noted: Lisbon, 12 May, with Ana. Hotel next.", "idempotency_key": "t1-a"}]


@pytest.fixture(autouse=True)
def _auto_update(settings):
    settings.SESSIONCTX_AUTO_UPDATE = True
    settings.SESSIONCTX_UPDATE_POLICY = "every_turn"


@pytest.mark.django_db
def test_put_sets_the_sessions_update_policy_and_a_wrong_one_is_refused(agent, reader):
    assert agent.put("/api/v1/sessions/up-1", {"update_policy": "every_n_turns:4"}).status_code == 201
    assert SessionContext.objects.get(session_id="up-1").update_policy == "every_n_turns:4"
    assert agent.put("/api/v1/sessions/up-1", {"update_policy": "idle:120"}).status_code == 200
    listed = agent.get("/api/v1/sessions").json()["results"]
    assert [s["update_policy"] for s in listed if s["session_id"] == "up-1"] == ["idle:120"]
    for wrong in ("every_n_turns:0", "sometimes", 5):
        assert_error(agent.put("/api/v1/sessions/up-1", {"update_policy": wrong}), 400)
    assert SessionContext.objects.get(session_id="up-1").update_policy == "idle:120"
    assert_error(reader.put("/api/v1/sessions/up-1", {"update_policy": "every_turn"}), 403)
    assert agent.put("/api/v1/sessions/up-1", {"update_policy": ""}).status_code == 200  # back to the default
    assert SessionContext.objects.get(session_id="up-1").update_policy == ""


@pytest.mark.django_db
def test_posted_turns_follow_the_policy_set_by_put(agent):
    agent.put("/api/v1/sessions/up-2", {"update_policy": "every_n_turns:2"})
    first = agent.post("/api/v1/sessions/up-2/messages", {"messages": TURN}).json()
    second = agent.post("/api/v1/sessions/up-2/messages", {"messages": [
        {"role": "user", "content": "And a hotel near Alfama."}, {"role": "assistant", "content": "Booked."}]}).json()
    assert first["update"] is None and second["update"]["status"] in ("queued", "succeeded")
    assert ExtractionRun.objects.filter(session__session_id="up-2").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["context", "context/prompt"])
def test_a_fresh_read_waits_for_the_update_of_unseen_messages(agent, path):
    agent.put("/api/v1/sessions/up-3", {"update_policy": "every_n_turns:10", "mode": "summary"})
    agent.post("/api/v1/sessions/up-3/messages", {"messages": TURN})
    stale = agent.get(f"/api/v1/sessions/up-3/{path}")
    assert "Lisbon" not in stale.content.decode() and "X-Context-Fresh" not in stale
    fresh = agent.get(f"/api/v1/sessions/up-3/{path}?fresh=true")
    assert fresh.status_code == 200 and fresh["X-Context-Fresh"] == "true"
    assert "Lisbon" in fresh.content.decode()
    session = SessionContext.objects.get(session_id="up-3")
    assert session.cursor_seq == session.last_message_seq == 2
    # Nothing unseen now: fresh at once, no further run.
    assert agent.get(f"/api/v1/sessions/up-3/{path}?fresh=true")["X-Context-Fresh"] == "true"
    assert ExtractionRun.objects.filter(session__session_id="up-3").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_while_its_fresh_read_waits_gets_401_not_the_update(agent):
    key, raw = services.api_key_create(name="leaked", scopes=["read"])
    agent.put("/api/v1/sessions/up-rev", {"update_policy": "every_n_turns:10"})
    agent.post("/api/v1/sessions/up-rev/messages", {"messages": [{"role": "user", "content": "My card is 4111"}]})
    session = SessionContext.objects.get(session_id="up-rev")
    ExtractionRun.objects.create(session=session, status="queued", trigger="api")  # the update the read waits for
    reader = Agent(raw)
    assert reader.get("/api/v1/sessions/up-rev/context").status_code == 200  # the key works

    def later():
        time.sleep(0.4)
        services.api_key_revoke(api_key=key)  # an admin revokes the leaked key ...
        time.sleep(0.3)
        services.snapshot_update(session=session, expected_version=session.version, source="extraction",
                                 actor=Actor.system("model"), changes={"summary": "Card ending 4111 on file."},
                                 cursor_seq=session.last_message_seq)  # ... then the update lands
        close_old_connections()

    writer = threading.Thread(target=later)
    writer.start()
    response = reader.get("/api/v1/sessions/up-rev/context?fresh=true")
    writer.join()
    assert b"Card ending" not in response.content
    assert_error(response, 401, "authentication_failed")


@pytest.mark.django_db(transaction=True)
def test_a_fresh_read_says_so_when_no_update_can_come(agent, settings):
    agent.post("/api/v1/sessions/up-4/messages", {"messages": [{"role": "user", "content": "Hello"}]})
    settings.SESSIONCTX_AUTO_UPDATE = False
    response = agent.get("/api/v1/sessions/up-4/context?fresh=true")
    assert response.status_code == 200 and response["X-Context-Fresh"] == "false"
    assert_error(agent.get("/api/v1/sessions/up-4/context?fresh=maybe"), 400)
    assert_error(agent.get("/api/v1/sessions/nobody/context?fresh=true"), 404)


@pytest.mark.django_db(transaction=True)
def test_a_fresh_read_outlasts_the_web_processes_database_deadline(agent, settings, on_postgres, monkeypatch):
    """gunicorn's processes bound a request's database waits (DB_STATEMENT_TIMEOUT + 0.5 s, 5.5 s by default); a
    fresh read waits up to SESSIONCTX_FRESH_WAIT (10 s) between its queries, and must answer, not a 503."""
    if not on_postgres:
        pytest.skip("the database deadline is for PostgreSQL")
    agent.put("/api/v1/sessions/up-6", {"update_policy": "every_n_turns:10"})
    agent.post("/api/v1/sessions/up-6/messages", {"messages": TURN})
    # A run that is taking its time: the read waits for it until SESSIONCTX_FRESH_WAIT.
    ExtractionRun.objects.create(session=SessionContext.objects.get(session_id="up-6"),
                                 status=ExtractionRun.Status.RUNNING, started_at=timezone.now())
    settings.SESSIONCTX_FRESH_WAIT = 1.5
    monkeypatch.setattr(database, "_request_deadline", 0.5)  # what limit_web_database_waits() sets, shorter
    response = agent.get("/api/v1/sessions/up-6/context?fresh=true")
    assert response.status_code == 200, response.content
    assert response["X-Context-Fresh"] == "false"


@pytest.mark.django_db(transaction=True)
def test_under_an_idle_policy_a_read_of_a_quiet_conversation_queues_its_update(agent, settings):
    settings.SESSIONCTX_UPDATE_POLICY = "idle:60"
    agent.post("/api/v1/sessions/up-5/messages", {"messages": TURN})
    assert agent.get("/api/v1/sessions/up-5/context").status_code == 200
    assert not ExtractionRun.objects.filter(session__session_id="up-5").exists()  # not quiet long enough
    Message.objects.filter(session__session_id="up-5").update(created_at=timezone.now() - timedelta(seconds=61))
    agent.get("/api/v1/sessions/up-5/context")
    assert ExtractionRun.objects.filter(session__session_id="up-5", trigger="idle").count() == 1
    session = SessionContext.objects.get(session_id="up-5")
    assert session.cursor_seq == 2
