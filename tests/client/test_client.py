"""The client package against a live server: every API operation in both forms (sync and async), each typed
error from a real answer, the 304 cache, the event feed."""

from __future__ import annotations

import importlib.metadata
import inspect
import threading
import time

import pytest
import sessionctx_client
import sessionctx_client.types
from django.conf import settings as django_settings
from sessionctx_client import (
    AsyncSessionCtxClient,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    SessionCtxClient,
    SessionCtxError,
    VersionConflictError,
)

from contexts import services
from contexts.models import Message, Revision, SessionContext
from contexts.services import Actor
from tests.api.conftest import Agent, etag_of
from tests.api.test_auth import api_operations
from tests.factories import make_api_key, make_session, make_user

TURN = [
    {"role": "user", "content": "Help me move our app from MySQL to PostgreSQL", "idempotency_key": "t1-u"},
    {"role": "assistant", "content": "Plan:\n1. Dump the schema\n2. Load data", "idempotency_key": "t1-a"},
]

# The client method for each API operation (route name, HTTP method): a route added without one fails the suite.
CLIENT_METHOD = {
    ("api-health", "get"): "health",
    ("api-sessions", "get"): "list_sessions",
    ("api-session", "put"): "create_session",
    ("api-session", "delete"): "delete_session",
    ("api-context", "get"): "get_context",
    ("api-context", "patch"): "update_context",
    ("api-context", "put"): "replace_context",
    ("api-context-prompt", "get"): "get_prompt",
    ("api-context-reset", "post"): "reset_context",
    ("api-context-update", "post"): "request_update",
    ("api-revisions", "get"): "list_revisions",
    ("api-revision-revert", "post"): "revert_context",
    ("api-messages", "get"): "list_messages",
    ("api-messages", "post"): "post_messages",
    ("api-handoff", "post"): "request_handoff",
    ("api-session-runs", "get"): "list_runs",
    ("api-run", "get"): "get_run",
    ("api-events", "get"): "list_events",
    ("api-locks", "get"): "get_locks",
    ("api-locks", "put"): "set_locks",
    ("api-session-usage", "get"): "get_usage",
    ("api-session-export", "get"): "export_session",
    ("api-user-export", "get"): "export_user",
    ("api-user", "delete"): "erase_user",
}


def public_methods(cls) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


# Probes for load balancers and orchestrators, not agents: the client's health() asks /api/v1/health, which answers
# as /api/v1/health/ready does.
PROBES = {("api-health-live", "get"), ("api-health-ready", "get")}


def test_every_api_operation_has_a_method_in_both_clients_with_the_same_signature():
    assert set(CLIENT_METHOD) | PROBES == api_operations()
    sync, asynchronous = public_methods(SessionCtxClient), public_methods(AsyncSessionCtxClient)
    assert set(CLIENT_METHOD.values()) | {"events"} <= sync
    assert sync - {"close"} == asynchronous - {"aclose"}
    for name in sync - {"close"}:
        sync_method, async_method = getattr(SessionCtxClient, name), getattr(AsyncSessionCtxClient, name)
        assert inspect.signature(sync_method).parameters == inspect.signature(async_method).parameters, name
        assert inspect.iscoroutinefunction(async_method) or inspect.isasyncgenfunction(async_method), name


# The client's TypedDicts and the schema's answers they type (docs/api.md: "Answers are dicts with the field names
# above (typed as TypedDicts in sessionctx_client.types)").
TYPED_ANSWERS = {
    "Context": "ContextOutput", "Session": "SessionOutput", "Revision": "RevisionOutput", "Message": "MessageOutput",
    "StoredMessage": "StoredMessage", "RunRef": "RunRef", "MessagesPosted": "MessagesPostOutput", "Run": "RunOutput",
    "Event": "EventOutput", "EventPage": "EventListOutput",
}


@pytest.mark.django_db
def test_every_typed_answer_has_the_fields_the_schema_says_the_api_answers():
    components = Agent().get("/api/schema/?format=json").json()["components"]["schemas"]
    for typed, component in TYPED_ANSWERS.items():
        annotated = getattr(sessionctx_client.types, typed)
        fields = annotated.__required_keys__ | annotated.__optional_keys__
        assert fields == set(components[component]["properties"]), typed


def test_the_package_version_is_the_api_version_it_speaks():
    assert sessionctx_client.__version__ == django_settings.SPECTACULAR_SETTINGS["VERSION"]
    assert importlib.metadata.version("sessionctx-client") == sessionctx_client.__version__


def test_health_answers_without_a_key(connect):
    anonymous = connect(api_key="")
    assert anonymous.health()["status"] == "ok"


def test_posting_messages_creates_the_session_and_a_retry_stores_nothing_twice(ctx):
    posted = ctx.post_messages("c-1", TURN, user_id="u-7", mode="planning", agent_id="bot")
    assert posted["session_id"] == "c-1" and posted["created"] is True
    assert [m["seq"] for m in posted["stored"]] == [1, 2]

    retried = ctx.post_messages("c-1", TURN)
    assert retried["created"] is False and retried["stored"] == [] and retried["duplicates"] == 2
    session = SessionContext.objects.get(session_id="c-1")
    assert (session.user_id, session.mode, session.agent_id) == ("u-7", "planning", "bot")
    assert list(Message.objects.filter(session=session).order_by("seq").values_list(
        "seq", "content", "idempotency_key")) == [(1, TURN[0]["content"], "t1-u"), (2, TURN[1]["content"], "t1-a")]


def test_the_transcript_pages_in_order(ctx):
    ctx.post_messages("c-msgs", TURN + [{"role": "user", "content": "And the data?"}])

    first = ctx.list_messages("c-msgs", limit=2)
    assert [(m["seq"], m["role"], m["author"]) for m in first["results"]] == [(1, "user", None),
                                                                             (2, "assistant", None)]
    rest = ctx.list_messages("c-msgs", limit=2, cursor=first["next"])  # the link as the API gives it
    assert [m["content"] for m in rest["results"]] == ["And the data?"] and rest["next"] is None
    assert [m["seq"] for m in ctx.list_messages("c-msgs", after_seq=2)["results"]] == [3]


def test_a_next_link_passed_alone_keeps_its_filters_and_limit(ctx):
    for session_id, user in [("nl-1", "u-1"), ("nl-2", "u-2"), ("nl-3", "u-1"), ("nl-4", "u-1"), ("nl-5", "u-1")]:
        ctx.create_session(session_id, user_id=user)
    first = ctx.list_sessions(user_id="u-1", limit=2)
    assert [s["session_id"] for s in first["results"]] == ["nl-5", "nl-4"]
    # As the docs say: pass the page's `next` as `cursor`. u-2's session stays out, and pages stay 2 long.
    second = ctx.list_sessions(cursor=first["next"])
    assert [s["session_id"] for s in second["results"]] == ["nl-3", "nl-1"]


def test_create_list_and_read_sessions(ctx):
    created = ctx.create_session("c-2", mode="planning", user_id="u-1", team_id="travel")
    assert created["session_id"] == "c-2" and created["version"] == 0
    assert ctx.create_session("c-2")["team_id"] == "travel"  # idempotent
    ctx.create_session("c-2b", mode="summary", user_id="u-1")
    ctx.create_session("c-2c", mode="planning", user_id="u-2")

    mine = ctx.list_sessions(user_id="u-1")
    assert [s["session_id"] for s in mine["results"]] == ["c-2b", "c-2"]
    first = ctx.list_sessions(user_id="u-1", limit=1)
    assert [s["session_id"] for s in ctx.list_sessions(user_id="u-1", cursor=first["next"])["results"]] == ["c-2"]
    assert [s["session_id"] for s in ctx.list_sessions(mode="summary")["results"]] == ["c-2b"]

    context = ctx.get_context("c-2")
    assert {"summary", "goal", "plan", "progress", "status", "mode", "version", "created_at"} <= set(context)
    assert (context["status"], context["mode"], context["plan"]) == ("active", "planning", [])
    assert ctx.get_prompt("c-2") == ""  # nothing to say yet


def test_update_context_writes_on_top_of_the_version_read(ctx):
    make_session("c-3")
    before = ctx.get_context("c-3")["version"]

    written = ctx.update_context("c-3", expected_version=before, goal="Move to PostgreSQL",
                                 plan=("Dump", "Load"), progress=["Dump"], reason="agent's plan")
    assert written["version"] == before + 1 and written["plan"] == ["Dump", "Load"]
    revision = Revision.objects.get(session__session_id="c-3", version=written["version"])
    assert (revision.source, revision.reason) == ("api", "agent's plan")
    prompt = ctx.get_prompt("c-3")
    assert "<session_context>" in prompt and "Goal: Move to PostgreSQL" in prompt and "✓ Dump" in prompt


def test_a_stale_version_raises_version_conflict_with_the_current_version_and_changes_nothing(ctx):
    make_session("c-4", content={"goal": "first"})
    current = ctx.get_context("c-4")["version"]

    with pytest.raises(VersionConflictError) as caught:
        ctx.update_context("c-4", expected_version=current - 1, goal="lost")
    error = caught.value
    assert (error.status, error.code, error.current_version) == (412, "version_conflict", current)
    assert error.details["expected_version"] == current - 1 and "re-read" in error.message
    assert SessionContext.objects.get(session_id="c-4").goal == "first"
    assert Revision.objects.filter(session__session_id="c-4").count() == current


def test_replace_reset_revert_and_revisions(ctx):
    make_session("c-5", content={"goal": "trip", "plan": ["Book flights"], "summary": "Lisbon"})
    version = ctx.get_context("c-5")["version"]

    replaced = ctx.replace_context("c-5", expected_version=version, goal="trip in May", reason="rewrite")
    assert (replaced["goal"], replaced["plan"], replaced["summary"]) == ("trip in May", [], "")
    with pytest.raises(VersionConflictError) as caught:
        ctx.reset_context("c-5", "user started over", expected_version=version)
    assert caught.value.current_version == replaced["version"]
    reset = ctx.reset_context("c-5", "user started over", expected_version=replaced["version"])
    assert (reset["goal"], reset["version"]) == ("", replaced["version"] + 1)

    page = ctx.list_revisions("c-5", limit=2)
    assert [r["version"] for r in page["results"]] == [reset["version"], replaced["version"]]
    assert page["results"][0]["reason"] == "user started over" and page["results"][1]["source"] == "api"
    older = ctx.list_revisions("c-5", limit=2, cursor=page["next"])["results"]
    assert [r["version"] for r in older] == [version]

    with pytest.raises(VersionConflictError):
        ctx.revert_context("c-5", version, expected_version=replaced["version"], reason="stale")
    reverted = ctx.revert_context("c-5", version, expected_version=reset["version"], reason="the reset was wrong")
    assert (reverted["goal"], reverted["plan"], reverted["summary"]) == ("trip", ["Book flights"], "Lisbon")
    assert Revision.objects.get(session__session_id="c-5", version=reverted["version"]).reason.endswith(
        "the reset was wrong")


def test_request_an_update_and_read_its_run(ctx):
    ctx.post_messages("c-runs", TURN[:1])  # a user message alone queues nothing
    queued = ctx.request_update("c-runs")
    assert set(queued) == {"run_id", "status"}

    run = ctx.get_run(queued["run_id"])
    assert (run["id"], run["session_id"], run["trigger"]) == (queued["run_id"], "c-runs", "api")
    assert [r["id"] for r in ctx.list_runs("c-runs")["results"]] == [queued["run_id"]]
    with pytest.raises(NotFoundError):
        ctx.get_run("00000000-0000-0000-0000-000000000000")


def test_request_handoff_and_delete(ctx):
    make_session("c-6")
    context = ctx.request_handoff("c-6", "Customer asks for a refund")
    assert context["status"] == "handoff_requested"
    assert SessionContext.objects.get(session_id="c-6").handoff_reason == "Customer asks for a refund"

    assert ctx.delete_session("c-6") is None
    assert not SessionContext.objects.filter(session_id="c-6").exists()
    with pytest.raises(NotFoundError):
        ctx.get_context("c-6")  # not the answer cached before the erasure


def test_unknown_sessions_raise_not_found(ctx):
    for call in (lambda: ctx.get_context("nobody"), lambda: ctx.get_prompt("nobody"),
                 lambda: ctx.update_context("nobody", expected_version=0, goal="x"),
                 lambda: ctx.request_handoff("nobody", "help"), lambda: ctx.delete_session("nobody"),
                 lambda: ctx.list_revisions("nobody"), lambda: ctx.list_runs("nobody")):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert not SessionContext.objects.exists()


def test_handing_off_a_conversation_a_person_owns_raises_conflict(ctx):
    session = make_session("c-7")
    services.handoff_claim(session=session, actor=Actor.for_user(make_user("erin")))

    with pytest.raises(ConflictError) as caught:
        ctx.request_handoff("c-7", "help")
    assert (caught.value.status, caught.value.code, caught.value.details) == (409, "conflict", {"status": "human"})
    assert SessionContext.objects.get(session_id="c-7").status == "human"


def test_a_bad_key_raises_authentication_error(connect):
    stranger = connect(api_key="sck_bad_key")
    with pytest.raises(AuthenticationError) as caught:
        stranger.get_context("c-8")
    assert caught.value.status == 401 and caught.value.code == "authentication_failed"


def test_a_read_only_key_writing_raises_authentication_error_with_403(connect):
    make_session("c-9")
    reader = connect("read")
    assert reader.get_context("c-9")["session_id"] == "c-9"
    with pytest.raises(AuthenticationError) as caught:
        reader.request_handoff("c-9", "help")
    assert (caught.value.status, caught.value.code) == (403, "permission_denied")
    assert SessionContext.objects.get(session_id="c-9").status == "active"


def test_refused_input_raises_invalid_request_with_the_api_details(ctx):
    make_session("c-11")
    version = ctx.get_context("c-11")["version"]

    with pytest.raises(InvalidRequestError) as caught:
        ctx.update_context("c-11", expected_version=version, plan=["ok", 5])
    assert (caught.value.status, caught.value.code) == (400, "invalid")
    assert "plan" in caught.value.details["fields"]
    with pytest.raises(InvalidRequestError) as caught:
        ctx.post_messages("bad id", TURN)
    assert (caught.value.status, caught.value.code) == (400, "invalid_session_id")
    assert isinstance(caught.value, SessionCtxError)
    assert SessionContext.objects.get(session_id="c-11").version == version
    assert not SessionContext.objects.filter(session_id="bad id").exists()
    ctx.post_messages("c-11", [{"role": "user", "content": "Hi", "idempotency_key": "1u"}])
    with pytest.raises(InvalidRequestError) as caught:  # a key of another message: nothing stored
        ctx.post_messages("c-11", [{"role": "user", "content": "Bye", "idempotency_key": "1u"}])
    assert (caught.value.status, caught.value.code) == (422, "idempotency_key_reused")


def test_a_session_or_user_id_of_dots_alone_is_refused_as_invalid_not_sent_to_another_path(ctx):
    for call in (lambda: ctx.post_messages(".", TURN), lambda: ctx.get_context(".."),
                 lambda: ctx.create_session("..")):
        with pytest.raises(InvalidRequestError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (400, "invalid_session_id")
    assert not SessionContext.objects.exists()
    assert ctx.erase_user("..")["user_id"] == ".."  # a user id may be dots: it reaches that user's route
    with pytest.raises(NotFoundError) as caught:
        ctx.get_run("..")
    assert "/api/v1/runs/" in caught.value.message  # it asked under /runs/, not at another path


def test_a_base_url_ending_in_api_v1_works_too(connect, live_server):
    make_session("c-12")
    assert connect("read", base_url=f"{live_server.url}/api/v1/").get_context("c-12")["session_id"] == "c-12"


# --- the answer cache: a repeated read costs a 304 ----------------------------------------------------------


def test_a_repeated_read_of_an_unchanged_session_costs_a_304_and_a_change_is_seen(connect, recording):
    make_session("c-13", content={"goal": "first"})
    ctx = connect("read", "write", transport=recording)

    first = ctx.get_context("c-13")
    first["goal"] = "changed by the caller"  # must not leak into the next answer
    again = ctx.get_context("c-13")
    assert again["goal"] == "first" and again["version"] == first["version"]
    assert recording.seen == [("GET", "context", None, 200), ("GET", "context", etag_of("c-13", first["version"]), 304)]

    # Someone else writes: the next read gets the new snapshot, not the cached one.
    session = SessionContext.objects.get(session_id="c-13")
    services.snapshot_update(session=session, expected_version=session.version, changes={"goal": "second"},
                             source="api", actor=Actor.system("test"))
    assert ctx.get_context("c-13")["goal"] == "second"
    assert recording.seen[-1] == ("GET", "context", etag_of("c-13", first["version"]), 200)

    # The client's own write answers the new context: reading it back costs a 304.
    written = ctx.update_context("c-13", expected_version=first["version"] + 1, goal="third")
    assert ctx.get_context("c-13")["goal"] == "third"
    assert recording.seen[-1] == ("GET", "context", etag_of("c-13", written["version"]), 304)


def test_a_write_based_on_a_read_of_an_erased_session_does_not_land_on_the_new_one_of_that_id(ctx):
    ctx.create_session("c-reborn")
    read = ctx.update_context("c-reborn", expected_version=0, summary="the first conversation")
    # Erased and created again by someone else: its versions start again.
    services.session_delete(session=SessionContext.objects.get(session_id="c-reborn"), actor=Actor.system("test"))
    make_session("c-reborn", content={"summary": "another conversation"})

    with pytest.raises(VersionConflictError):
        ctx.update_context("c-reborn", expected_version=read["version"], goal="meant for the first")
    assert SessionContext.objects.get(session_id="c-reborn").goal == ""


# --- the event feed ---------------------------------------------------------------------------------------


def test_events_follow_next_after_across_pages(ctx):
    created = ctx.create_session("c-ev")
    written = ctx.update_context("c-ev", expected_version=created["version"], goal="trip")
    ctx.update_context("c-ev", expected_version=written["version"], plan=["Book flights"])
    ctx.request_handoff("c-ev", "refund")
    ctx.create_session("c-other")
    ctx.update_context("c-other", expected_version=0, goal="not this one")

    page = ctx.list_events(session_id="c-ev", limit=2)
    assert len(page["events"]) == 2 and page["has_more"] is True

    events = list(ctx.events(session_id="c-ev", limit=1, follow=False))  # one request per event
    assert events == ctx.list_events(session_id="c-ev", limit=100)["events"]
    assert [(e["type"], e["data"].get("version")) for e in events[:2]] == [("context.updated", 1),
                                                                           ("context.updated", 2)]
    assert events[-1]["type"] == "handoff.requested" and {e["session_id"] for e in events} == {"c-ev"}
    assert list(ctx.events(after=events[1]["id"], session_id="c-ev", follow=False)) == events[2:]
    handoffs = list(ctx.events(types=["handoff.requested"], follow=False))
    assert [e["id"] for e in handoffs] == [events[-1]["id"]]


def test_following_the_feed_long_polls_until_an_event_arrives(ctx, live_server):
    created = ctx.create_session("c-poll")
    writer = SessionCtxClient(live_server.url, _write_key())

    def write_later():
        time.sleep(1.0)
        writer.update_context("c-poll", expected_version=created["version"], goal="arrived")

    thread = threading.Thread(target=write_later)
    started = time.monotonic()
    thread.start()
    try:
        event = next(iter(ctx.events(session_id="c-poll", wait=10)))
    finally:
        thread.join()
        writer.close()
    waited = time.monotonic() - started
    assert event["type"] == "context.updated" and event["data"]["version"] == created["version"] + 1
    # One held request that answered when the write landed, not a loop of quick polls nor the whole wait.
    assert 0.9 <= waited < 5, waited


def test_following_the_feed_pauses_between_polls_when_the_server_waits_less_than_asked(connect, live_server,
                                                                                       recording, settings):
    settings.SESSIONCTX_EVENTS_MAX_WAIT = 0  # long polls off (each holds a web thread): a wait of 25 waits 0
    created = make_session("c-nowait")
    ctx = connect("read", transport=recording)
    writer = SessionCtxClient(live_server.url, _write_key())
    thread = threading.Timer(2.5, lambda: writer.update_context("c-nowait", expected_version=created.version,
                                                                goal="arrived"))
    thread.start()
    try:
        event = next(iter(ctx.events(session_id="c-nowait", wait=25)))
    finally:
        thread.join()
        writer.close()
    assert event["type"] == "context.updated"
    polls = [seen for seen in recording.seen if seen[1] == "events"]
    assert 2 <= len(polls) <= 5, f"{len(polls)} polls in 2.5 s"  # a pause between empty pages, not a spin


def _write_key() -> str:
    from tests.factories import make_api_key

    return make_api_key("read", "write", name="writer")[1]


def test_a_repeated_prompt_read_of_an_unchanged_session_costs_a_304(connect, recording):
    make_session("c-14", content={"goal": "Move to PostgreSQL"})
    ctx = connect("read", "write", transport=recording)

    first = ctx.get_prompt("c-14")
    assert "Goal: Move to PostgreSQL" in first
    assert ctx.get_prompt("c-14") == first
    version = SessionContext.objects.get(session_id="c-14").version
    assert recording.seen == [("GET", "prompt", None, 200), ("GET", "prompt", etag_of("c-14", version), 304)]

    ctx.update_context("c-14", expected_version=version, goal="Move to MySQL")
    assert "Goal: Move to MySQL" in ctx.get_prompt("c-14")
    assert recording.seen[-1] == ("GET", "prompt", etag_of("c-14", version), 200)


def test_locks_usage_export_and_erasure_round_trip(ctx):
    ctx.post_messages("gov-1", TURN, user_id="u-gov", mode="planning")
    ctx.post_messages("gov-2", TURN, user_id="u-gov")
    locked = ctx.set_locks("gov-1", ["goal"], reason="the customer's words")
    assert [lock["field"] for lock in locked["locks"]] == ["goal"] and ctx.get_locks("gov-1") == locked
    with pytest.raises(ConflictError):  # read before the goal was locked: the change is refused
        ctx.set_locks("gov-1", [], reason="back to the model", expected_locks=[])
    assert ctx.set_locks("gov-1", [], reason="back to the model", expected_locks=["goal"])["locks"] == []
    usage = ctx.get_usage("gov-1")
    assert usage["session_id"] == "gov-1"
    document = ctx.export_session("gov-1")
    assert [m["content"] for m in document["messages"]] == [m["content"] for m in TURN]
    exported = ctx.export_user("u-gov")
    assert sorted(d["session"]["session_id"] for d in exported) == ["gov-1", "gov-2"]
    erased = ctx.erase_user("u-gov")
    assert erased["user_id"] == "u-gov" and erased["deleted"]["sessions"] == 2
    assert ctx.erase_user("u-gov")["deleted"]["sessions"] == 0
    assert not SessionContext.objects.filter(user_id="u-gov").exists()


def test_create_session_sets_the_update_policy_and_changes_it_on_an_existing_session(ctx):
    # docs/api.md: PUT /sessions/{id} sets the session's update policy ("" goes back to the server's), and unlike
    # the owners a PUT changes it; create_session is the client's method for that operation.
    ctx.create_session("c-policy", update_policy="every_n_turns:3")
    assert ctx.list_sessions()["results"][0]["update_policy"] == "every_n_turns:3"
    assert SessionContext.objects.get(session_id="c-policy").update_policy == "every_n_turns:3"

    ctx.create_session("c-policy", update_policy="")
    assert SessionContext.objects.get(session_id="c-policy").update_policy == ""


def test_an_export_the_service_stopped_half_way_is_an_error_not_a_shorter_export(connect, monkeypatch):
    from contexts.api import exports
    from contexts.models import ApiKey

    _, raw = make_api_key("read", "write", name="exporter")
    ctx = connect(api_key=raw)
    for n in range(3):
        ctx.post_messages(f"exp-{n}", TURN, user_id="u-exp")
    documents = exports.governance.session_documents

    def revoked_after_the_first(sessions):  # an admin revokes the key while a long export streams
        for i, document in enumerate(documents(sessions)):
            if i == 1:
                ApiKey.objects.filter(name="exporter").update(is_active=False)
            yield document

    monkeypatch.setattr(exports.governance, "session_documents", revoked_after_the_first)
    with pytest.raises(AuthenticationError) as stopped:
        ctx.export_user("u-exp")
    assert "The export stopped" in stopped.value.message and stopped.value.details["documents_received"] == 1
