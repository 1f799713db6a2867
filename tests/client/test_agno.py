"""The agno integration, driven by real agno Agents (agno, pinned in requirements-dev) whose OpenAIChat model is the
tests' fake OpenAI-compatible server, against a live sessionctx server whose extraction also runs on the fake."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from agno.agent import Agent
from agno.db.in_memory import InMemoryDb
from agno.learn import LearningMachine
from agno.models.openai import OpenAIChat
from sessionctx_client import SessionCtxClient
from sessionctx_client.agno import SessionCtxStore

from contexts import services
from contexts.models import Message, SessionContext
from contexts.services import Actor
from tests.factories import make_api_key, make_session, make_user
from tests.fake_openai import FakeOpenAI, Reply, error, parse_prompt, prose


@pytest.fixture
def fake():
    with FakeOpenAI(default=None) as server:
        yield server


@pytest.fixture
def fake_model(settings):
    """The fake server as the agent's model (scripted answers) and as the service's (echoing extraction)."""
    with FakeOpenAI() as server:
        settings.SESSIONCTX_MODEL, settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "fake-model", "k", server.url
        settings.OPENAI_TIMEOUT = 5.0
        yield server


@pytest.fixture
def key(live_server):
    return make_api_key("read", "write", name="agno")[1]


def agent_for(store: SessionCtxStore, fake: FakeOpenAI, *, db=None, hook=None, **options) -> Agent:
    return Agent(model=OpenAIChat(id="fake-model", base_url=fake.url, api_key="k", max_retries=0),
                 db=db or InMemoryDb(), instructions="You help teams move databases.",
                 learning=LearningMachine(custom_stores={"sessionctx": store}),
                 post_hooks=[hook or store.capture_hook()], **options)


def tool_call(name: str, arguments: dict) -> Reply:
    return Reply(body={
        "id": f"chatcmpl-tool-{name}", "object": "chat.completion", "created": int(time.time()), "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "refusal": None,
            "tool_calls": [{"id": f"call_{name}", "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def stored(session_id: str) -> list[tuple[str, str]]:
    return list(Message.objects.filter(session__session_id=session_id).order_by("seq").values_list("role", "content"))


def system_prompt(request: dict) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] in ("system", "developer"))


def test_a_run_reads_the_rendered_block_and_stores_its_turn(live_server, key, fake):
    make_session("ag-1", content={"goal": "Move to PostgreSQL", "plan": ["Dump the schema", "Load data"]})
    fake.push(prose("First, dump the schema with pg_dump."))

    with SessionCtxClient(live_server.url, key) as client:
        out = agent_for(SessionCtxStore(client), fake).run("Where do I start?", session_id="ag-1")

    assert out.content == "First, dump the schema with pg_dump."
    prompt = system_prompt(fake.requests[0])
    assert prompt.startswith("You help teams move databases.")
    assert "<session_context>" in prompt and "Goal: Move to PostgreSQL" in prompt
    assert stored("ag-1") == [("user", "Where do I start?"), ("assistant", "First, dump the schema with pg_dump.")]


def test_the_extraction_sees_the_reply_and_a_second_agent_sees_the_context(live_server, key, fake_model):
    fake = fake_model
    fake.push(prose("Step one: dump the schema with pg_dump."))

    with SessionCtxClient(live_server.url, key) as client:
        agent_for(SessionCtxStore(client, mode="planning"), fake).run("Help me move to PostgreSQL",
                                                                       session_id="ag-2")
        session = SessionContext.objects.get(session_id="ag-2")
        for _ in range(100):  # the service's update runs after the post answers
            session.refresh_from_db()
            if session.version >= 1:
                break
            time.sleep(0.05)

        extraction = next(r for r in fake.requests[1:] if "<message seq=" in json.dumps(r))
        _, shown = parse_prompt(extraction)
        assert [(role, text) for _, role, text in shown] == [
            ("user", "Help me move to PostgreSQL"), ("assistant", "Step one: dump the schema with pg_dump.")]

        # Another process: a new Agent with a fresh store and client, on the same session.
        fake.push(prose("Next, convert the types."))
        with SessionCtxClient(live_server.url, key) as other:
            agent_for(SessionCtxStore(other), fake).run("What next?", session_id="ag-2")
    second = next(r for r in reversed(fake.requests) if system_prompt(r).startswith("You help teams"))
    assert [m["content"] for m in second["messages"] if m["role"] == "user"] == ["What next?"]
    # The echoing extraction's summary names the messages it was shown: the first turn's two.
    assert "<session_context>\nSummary: m1 m2\n</session_context>" in system_prompt(second)


def test_a_retried_run_stores_no_message_twice(live_server, key, fake):
    fake.push(error(500, "overloaded"), prose("Here is the plan."))

    with SessionCtxClient(live_server.url, key) as client:
        out = agent_for(SessionCtxStore(client), fake, retries=1, delay_between_retries=0).run(
            "Plan my move", session_id="ag-3")

    assert out.content == "Here is the plan." and len(fake.requests) == 2
    assert stored("ag-3") == [("user", "Plan my move"), ("assistant", "Here is the plan.")]


def test_the_agent_writes_the_context_and_asks_for_a_human(live_server, key, fake):
    make_session("ag-4", mode="planning")
    fake.push(tool_call("update_session_context", {"goal": "Move to PostgreSQL", "plan": ["Dump", "Load"]}),
              tool_call("request_human", {"reason": "Customer wants a refund"}), prose("Someone will help you."))

    with SessionCtxClient(live_server.url, key) as client:
        agent_for(SessionCtxStore(client), fake).run("Move me to PostgreSQL, and I want a refund", session_id="ag-4")

    session = SessionContext.objects.get(session_id="ag-4")
    assert (session.goal, session.plan) == ("Move to PostgreSQL", ["Dump", "Load"])
    assert (session.status, session.handoff_reason) == ("handoff_requested", "Customer wants a refund")
    outputs = [m["content"] for r in fake.requests for m in r["messages"] if m["role"] == "tool"]
    assert outputs[0].startswith("Saved (version") and "handoff_requested" in outputs[-1]


def test_the_agent_keeps_working_when_the_service_does_not_answer(fake, caplog):
    fake.push(prose("Still here."))

    with SessionCtxClient("http://127.0.0.1:9", "sck_x", timeout=2) as client:
        out = agent_for(SessionCtxStore(client), fake).run("Hi", session_id="ag-6")

    assert out.content == "Still here."
    warnings = [r.getMessage() for r in caplog.records if r.name == "sessionctx_client.agno"]
    assert any("without the context" in w for w in warnings) and any("not stored" in w for w in warnings)


def test_a_persons_reply_from_the_desk_comes_back_to_the_agent(live_server, key, fake, settings):
    # The service's own update (which would put the reply in the summary once the person hands back) has not run:
    # the agent must not depend on it.
    settings.SESSIONCTX_AUTO_UPDATE = False
    make_session("ag-7")
    db = InMemoryDb()  # agno's own history, kept between the two runs as a SqliteDb would be
    fake.push(tool_call("request_human", {"reason": "Customer wants a refund"}),
              prose("I've asked a colleague to help; they will answer here."))
    with SessionCtxClient(live_server.url, key) as client:
        agent_for(SessionCtxStore(client), fake, db=db).run("I want my money back", session_id="ag-7")
    assert SessionContext.objects.get(session_id="ag-7").status == "handoff_requested"

    # A person takes it, answers the customer from the desk and hands it back.
    erin = Actor.for_user(make_user("erin"))
    services.handoff_claim(session=SessionContext.objects.get(session_id="ag-7"), actor=erin)
    services.handoff_reply(session=SessionContext.objects.get(session_id="ag-7"), content="Refund issued, 3-5 days.",
                           actor=erin)
    services.handoff_release(session=SessionContext.objects.get(session_id="ag-7"), note="", actor=erin)

    # The agent's process learns of the reply from the event feed, to deliver it to the customer...
    with SessionCtxClient(live_server.url, key) as client:
        (reply,) = SessionCtxStore(client).human_replies("ag-7", follow=False)
    assert (reply["content"], reply["author"]) == ("Refund issued, 3-5 days.", "erin")
    assert stored("ag-7")[reply["seq"] - 1] == ("assistant", "Refund issued, 3-5 days.")

    # ...and the agent's next run (another process) knows what the person said, which agno's history does not hold.
    fake.push(prose("Your refund is on its way; it takes 3-5 days."))
    with SessionCtxClient(live_server.url, key) as client:
        agent_for(SessionCtxStore(client), fake, db=db).run("When will I see my money?", session_id="ag-7")
    prompt = system_prompt(fake.requests[-1])
    assert "<human_replies>" in prompt and "[erin, " in prompt
    assert "] Refund issued, 3-5 days.\n</human_replies>" in prompt
    assert prompt.count("Refund issued") == 1  # not in the summary
    history = [m["content"] for m in fake.requests[-1]["messages"] if m["role"] == "assistant"]
    assert not any("Refund issued" in (text or "") for text in history)
    assert stored("ag-7")[-2:] == [("user", "When will I see my money?"),
                                   ("assistant", "Your refund is on its way; it takes 3-5 days.")]


def test_the_async_run_reads_the_block_writes_hands_off_and_stores_its_turn_off_the_event_loop(live_server, key,
                                                                                             fake):
    make_session("ag-8", mode="planning", content={"summary": "The customer is moving to PostgreSQL."})
    fake.push(tool_call("update_session_context", {"goal": "Move to PostgreSQL", "plan": ["Dump", "Load"]}),
              tool_call("request_human", {"reason": "Customer wants a refund"}), prose("Someone will help you."))
    loop_threads: set[str] = set()
    service_threads: set[str] = set()

    class Watched(SessionCtxClient):
        """Notes the threads the store calls the service from."""

        def _run(self, call):
            service_threads.add(threading.current_thread().name)
            return super()._run(call)

    async def main():
        loop_threads.add(threading.current_thread().name)
        with Watched(live_server.url, key) as client:
            store = SessionCtxStore(client)
            return await agent_for(store, fake, hook=store.acapture_hook()).arun(
                "Move me to PostgreSQL, and I want a refund", session_id="ag-8")

    out = asyncio.run(main())

    assert out.content == "Someone will help you."
    assert "Summary: The customer is moving to PostgreSQL." in system_prompt(fake.requests[0])
    session = SessionContext.objects.get(session_id="ag-8")
    assert (session.goal, session.plan) == ("Move to PostgreSQL", ["Dump", "Load"])
    assert (session.status, session.handoff_reason) == ("handoff_requested", "Customer wants a refund")
    outputs = [m["content"] for m in fake.requests[-1]["messages"] if m["role"] == "tool"]
    assert outputs[0].startswith("Saved (version") and "handoff_requested" in outputs[1]
    assert stored("ag-8")[0] == ("user", "Move me to PostgreSQL, and I want a refund")
    assert stored("ag-8")[-1] == ("assistant", "Someone will help you.")
    # recall, the tools, process and the hook all waited for the service in worker threads, never on the loop.
    assert service_threads and not service_threads & loop_threads
