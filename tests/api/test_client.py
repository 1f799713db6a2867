"""contexts.client against a live server: every method, and each typed error from a real answer."""

from __future__ import annotations

import pytest

from contexts import services
from contexts.client import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    SessionCtxClient,
    SessionCtxError,
    VersionConflictError,
)
from contexts.models import Message, Revision, SessionContext
from contexts.services import Actor
from tests.factories import make_api_key, make_session, make_user

TURN = [
    {"role": "user", "content": "Help me move our app from MySQL to PostgreSQL", "idempotency_key": "t1-u"},
    {"role": "assistant", "content": "Plan:\n1. Dump the schema\n2. Load data", "idempotency_key": "t1-a"},
]


@pytest.fixture
def client(live_server):
    _, raw = make_api_key("read", "write", name="client")
    with SessionCtxClient(live_server.url, raw, timeout=10) as c:
        yield c


def test_posting_messages_creates_the_session_and_a_retry_stores_nothing_twice(client):
    posted = client.post_messages("c-1", TURN, user_id="u-7", mode="planning", agent_id="bot")
    assert posted["session_id"] == "c-1" and posted["created"] is True
    assert [m["seq"] for m in posted["stored"]] == [1, 2]

    retried = client.post_messages("c-1", TURN)
    assert retried["created"] is False and retried["stored"] == [] and retried["duplicates"] == 2
    session = SessionContext.objects.get(session_id="c-1")
    assert (session.user_id, session.mode, session.agent_id) == ("u-7", "planning", "bot")
    assert list(Message.objects.filter(session=session).order_by("seq").values_list("seq", "content",
                                                                                      "idempotency_key")) == [
        (1, TURN[0]["content"], "t1-u"), (2, TURN[1]["content"], "t1-a")]
    assert session.last_message_seq == 2


def test_create_and_read_the_context(client):
    created = client.create_session("c-2", mode="planning", user_id="u-1", team_id="travel")
    assert created["session_id"] == "c-2" and created["version"] == 0
    assert client.create_session("c-2")["team_id"] == "travel"  # idempotent

    context = client.get_context("c-2")
    assert {"summary", "goal", "plan", "progress", "status", "mode", "version", "created_at"} <= set(context)
    assert (context["status"], context["mode"], context["plan"]) == ("active", "planning", [])
    assert client.get_prompt("c-2") == ""  # nothing to say yet


def test_update_context_writes_on_top_of_the_version_read(client):
    make_session("c-3")
    before = client.get_context("c-3")["version"]

    written = client.update_context("c-3", expected_version=before, goal="Move to PostgreSQL",
                                    plan=["Dump", "Load"], progress=["Dump"], reason="agent's plan")
    assert written["version"] == before + 1 and written["plan"] == ["Dump", "Load"]
    revision = Revision.objects.get(session__session_id="c-3", version=written["version"])
    assert (revision.source, revision.reason) == ("api", "agent's plan")
    prompt = client.get_prompt("c-3")
    assert "<session_context>" in prompt and "Goal: Move to PostgreSQL" in prompt and "✓ Dump" in prompt


def test_a_stale_version_raises_version_conflict_with_the_current_version_and_changes_nothing(client):
    make_session("c-4", content={"goal": "first"})
    current = client.get_context("c-4")["version"]

    with pytest.raises(VersionConflictError) as caught:
        client.update_context("c-4", expected_version=current - 1, goal="lost")
    error = caught.value
    assert (error.status, error.code, error.current_version) == (412, "version_conflict", current)
    assert error.details["expected_version"] == current - 1 and "re-read" in error.message
    assert SessionContext.objects.get(session_id="c-4").goal == "first"
    assert Revision.objects.filter(session__session_id="c-4").count() == current


def test_replace_reset_and_revisions(client):
    make_session("c-5", content={"goal": "trip", "plan": ["Book flights"], "summary": "Lisbon"})
    version = client.get_context("c-5")["version"]

    replaced = client.replace_context("c-5", expected_version=version, goal="trip in May", reason="rewrite")
    assert (replaced["goal"], replaced["plan"], replaced["summary"]) == ("trip in May", [], "")
    with pytest.raises(VersionConflictError):
        client.reset_context("c-5", "user started over", expected_version=version)
    reset = client.reset_context("c-5", "user started over", expected_version=replaced["version"])
    assert (reset["goal"], reset["version"]) == ("", replaced["version"] + 1)

    revisions = client.list_revisions("c-5", limit=2)
    assert [r["version"] for r in revisions] == [reset["version"], replaced["version"]]
    assert revisions[0]["reason"] == "user started over" and revisions[1]["source"] == "api"


def test_request_handoff_and_delete(client):
    make_session("c-6")
    context = client.request_handoff("c-6", "Customer asks for a refund")
    assert context["status"] == "handoff_requested"
    assert SessionContext.objects.get(session_id="c-6").handoff_reason == "Customer asks for a refund"

    assert client.delete_session("c-6") is None
    assert not SessionContext.objects.filter(session_id="c-6").exists()


def test_unknown_sessions_raise_not_found(client):
    for call in (lambda: client.get_context("nobody"), lambda: client.get_prompt("nobody"),
                 lambda: client.update_context("nobody", expected_version=0, goal="x"),
                 lambda: client.request_handoff("nobody", "help"), lambda: client.delete_session("nobody")):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert not SessionContext.objects.exists()


def test_handing_off_a_conversation_a_person_owns_raises_conflict(client):
    session = make_session("c-7")
    services.handoff_claim(session=session, actor=Actor.for_user(make_user("erin")))

    with pytest.raises(ConflictError) as caught:
        client.request_handoff("c-7", "help")
    assert (caught.value.status, caught.value.code, caught.value.details) == (409, "conflict", {"status": "human"})
    assert SessionContext.objects.get(session_id="c-7").status == "human"


def test_a_bad_key_raises_authentication_error(live_server):
    with SessionCtxClient(live_server.url, "sck_bad_key", timeout=10) as stranger, \
            pytest.raises(AuthenticationError) as caught:
        stranger.get_context("c-8")
    assert caught.value.status == 401 and caught.value.code == "authentication_failed"


def test_a_read_only_key_writing_raises_authentication_error_with_403(live_server):
    make_session("c-9")
    _, raw = make_api_key("read", name="reader")
    with SessionCtxClient(live_server.url, raw, timeout=10) as reader:
        assert reader.get_context("c-9")["session_id"] == "c-9"
        with pytest.raises(AuthenticationError) as caught:
            reader.request_handoff("c-9", "help")
    assert (caught.value.status, caught.value.code) == (403, "permission_denied")
    assert SessionContext.objects.get(session_id="c-9").status == "active"


def test_too_many_requests_raise_rate_limited_with_retry_after(client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"}}
    make_session("c-10")
    client.get_context("c-10")
    client.get_context("c-10")

    with pytest.raises(RateLimitedError) as caught:
        client.get_context("c-10")
    assert (caught.value.status, caught.value.code) == (429, "throttled")
    assert 1 <= caught.value.retry_after <= 60


def test_other_refusals_raise_the_base_error_with_the_api_details(client):
    make_session("c-11")
    version = client.get_context("c-11")["version"]

    with pytest.raises(SessionCtxError) as caught:
        client.update_context("c-11", expected_version=version, colour="blue")
    error = caught.value
    assert type(error) is SessionCtxError
    assert (error.status, error.code) == (400, "invalid")
    assert "colour" in error.details["fields"]
    assert SessionContext.objects.get(session_id="c-11").version == version


def test_a_session_id_the_api_refuses_raises_the_base_error(client):
    with pytest.raises(SessionCtxError) as caught:
        client.post_messages("bad id", TURN)
    assert (caught.value.status, caught.value.code) == (400, "invalid_session_id")
    assert not SessionContext.objects.exists()


def test_a_base_url_ending_in_api_v1_works_too(live_server):
    make_session("c-12")
    _, raw = make_api_key("read", name="reader")
    with SessionCtxClient(f"{live_server.url}/api/v1/", raw) as c:
        assert c.get_context("c-12")["session_id"] == "c-12"
