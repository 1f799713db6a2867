"""The OpenAI Agents SDK integration, driven by a real Agent run (openai-agents, pinned in requirements-dev) whose
model is the tests' fake OpenAI-compatible server, against a live sessionctx server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner
from openai import AsyncOpenAI
from sessionctx_client import AsyncSessionCtxClient, ahuman_replies
from sessionctx_client.openai_agents import SessionCtxSession, request_human_tool, session_context_instructions

from contexts import services
from contexts.models import Message, SessionContext
from contexts.services import Actor
from tests.factories import make_api_key, make_session, make_user
from tests.fake_openai import FakeOpenAI, Reply, prose

RUN = RunConfig(tracing_disabled=True)


@pytest.fixture
def fake():
    with FakeOpenAI(default=None) as server:
        yield server


@pytest.fixture
def key(live_server):
    return make_api_key("read", "write", name="agents-sdk")[1]


def agent_for(session: SessionCtxSession, fake: FakeOpenAI) -> Agent:
    model = OpenAIChatCompletionsModel(model="fake-model", openai_client=AsyncOpenAI(base_url=fake.url, api_key="k",
                                                                                     max_retries=0))
    return Agent(name="support", model=model,
                 instructions=session_context_instructions("You help teams move databases.", session),
                 tools=[request_human_tool(session)])


def tool_call(name: str, arguments: dict, call_id: str = "call_1") -> Reply:
    return Reply(body={
        "id": "chatcmpl-tool", "object": "chat.completion", "created": int(time.time()), "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "refusal": None,
            "tool_calls": [{"id": call_id, "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def system_prompt(request: dict) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] in ("system", "developer"))


def run(live_server, key, fake, session_id: str, *turns: str, **session_options) -> list[str]:
    """Each turn run by a new Agent over a new client, as separate agent processes would; the final outputs."""

    async def main() -> list[str]:
        outputs = []
        for turn in turns:
            async with AsyncSessionCtxClient(live_server.url, key) as client:
                session = SessionCtxSession(session_id, client, **session_options)
                result = await Runner.run(agent_for(session, fake), turn, session=session, run_config=RUN)
                outputs.append(result.final_output)
        return outputs

    return asyncio.run(main())


def test_a_run_reads_the_context_block_and_stores_its_turn(live_server, key, fake):
    make_session("oa-1", content={"goal": "Move to PostgreSQL", "plan": ["Dump the schema", "Load data"]})
    fake.push(prose("First, dump the schema with pg_dump."))

    assert run(live_server, key, fake, "oa-1", "Where do I start?") == ["First, dump the schema with pg_dump."]

    (request,) = fake.requests
    instructions = system_prompt(request)
    assert instructions.startswith("You help teams move databases.")
    assert "<session_context>" in instructions and "Goal: Move to PostgreSQL" in instructions
    stored = list(Message.objects.filter(session__session_id="oa-1").order_by("seq").values_list("role", "content"))
    assert stored == [("user", "Where do I start?"), ("assistant", "First, dump the schema with pg_dump.")]


def test_a_second_process_continues_the_conversation_from_the_service(live_server, key, fake):
    fake.push(prose("Dump the schema."), prose("Then load the data."))

    run(live_server, key, fake, "oa-2", "Help me move to PostgreSQL", "And then?", user_id="u-7", mode="planning")

    second = fake.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in second if m["role"] in ("user", "assistant")] == [
        ("user", "Help me move to PostgreSQL"), ("assistant", "Dump the schema."), ("user", "And then?")]
    session = SessionContext.objects.get(session_id="oa-2")
    assert (session.user_id, session.mode, session.last_message_seq) == ("u-7", "planning", 4)


def test_the_agent_hands_off_and_a_persons_reply_comes_back_from_the_feed_and_in_its_history(live_server, key, fake):
    make_session("oa-3")
    fake.push(tool_call("request_human", {"reason": "Customer wants a refund"}),
              prose("I've asked a colleague to help; they will answer here."))

    run(live_server, key, fake, "oa-3", "I want my money back")

    session = SessionContext.objects.get(session_id="oa-3")
    assert (session.status, session.handoff_reason) == ("handoff_requested", "Customer wants a refund")
    tool_output = next(m for m in fake.requests[1]["messages"] if m["role"] == "tool")
    assert "handoff_requested" in tool_output["content"]

    # A person takes it and answers the customer from the desk.
    erin = Actor.for_user(make_user("erin"))
    services.handoff_claim(session=session, actor=erin)
    services.handoff_reply(session=SessionContext.objects.get(session_id="oa-3"),
                           content="Refund issued, 3-5 days.", actor=erin)

    async def history() -> tuple[list, list]:
        async with AsyncSessionCtxClient(live_server.url, key) as client:
            # The agent's process learns of the reply from the event feed, to deliver it...
            replies = [reply async for reply in ahuman_replies(client, "oa-3", follow=False)]
            # ...and the next run has it in its history.
            return replies, await SessionCtxSession("oa-3", client).get_items()

    replies, items = asyncio.run(history())
    assert [(reply["content"], reply["author"]) for reply in replies] == [("Refund issued, 3-5 days.", "erin")]
    # The tool call and its output come back as the items the SDK stored; the person's reply as the assistant's.
    assert [item.get("type", "message") for item in items] == [
        "message", "function_call", "function_call_output", "message", "message"]
    assert items[1]["name"] == "request_human" and items[2]["call_id"] == items[1]["call_id"]
    assert items[-1] == {"role": "assistant", "content": "Refund issued, 3-5 days."}


def test_a_retried_batch_of_model_outputs_is_stored_once_and_items_are_limited_from_the_end(live_server, key):
    # Items as a Responses-API model gives them: each output has its own id, a tool call its call_id.
    outputs = [
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Let me get someone.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_7", "name": "request_human",
         "arguments": "{\"reason\": \"help\"}"},
        {"type": "function_call_output", "call_id": "call_7", "output": "A person has been asked."},
    ]

    async def main() -> tuple[list, list]:
        async with AsyncSessionCtxClient(live_server.url, key) as client:
            session = SessionCtxSession("oa-4", client)
            await session.add_items([{"role": "user", "content": "Get me a person"}])
            await session.add_items(outputs)
            await session.add_items(outputs)  # the SDK retrying the run's outputs
            return await session.get_items(), await session.get_items(limit=2)

    items, last_two = asyncio.run(main())
    assert list(Message.objects.filter(session__session_id="oa-4").order_by("seq").values_list("role", "content")) == [
        ("user", "Get me a person"), ("assistant", "Let me get someone."),
        ("tool", json.dumps(outputs[1], sort_keys=True)), ("tool", json.dumps(outputs[2], sort_keys=True))]
    assert items[1] == {"role": "assistant", "content": "Let me get someone."} and items[2:] == outputs[1:]
    assert last_two == outputs[1:]


def test_clear_session_erases_it_and_pop_item_is_refused(live_server, key, fake):
    fake.push(prose("Hello."))
    run(live_server, key, fake, "oa-5", "Hi")

    async def main():
        async with AsyncSessionCtxClient(live_server.url, key) as client:
            session = SessionCtxSession("oa-5", client)
            with pytest.raises(NotImplementedError):
                await session.pop_item()
            await session.clear_session()
            return await session.get_items()

    assert asyncio.run(main()) == []
    assert not SessionContext.objects.filter(session_id="oa-5").exists()


def test_the_agent_keeps_working_when_the_service_does_not_answer(fake, caplog):
    fake.push(prose("Still here."))

    async def main():
        # A port nothing listens on: every call to the service fails to connect.
        async with AsyncSessionCtxClient("http://127.0.0.1:9", "sck_x", timeout=2) as client:
            session = SessionCtxSession("oa-6", client)
            return (await Runner.run(agent_for(session, fake), "Hi", session=session, run_config=RUN)).final_output

    assert asyncio.run(main()) == "Still here."
    assert system_prompt(fake.requests[0]) == "You help teams move databases."
    warnings = [r.getMessage() for r in caplog.records if r.name == "sessionctx_client.openai_agents"]
    assert any("without history" in w for w in warnings) and any("without the context" in w for w in warnings)
    assert any("not stored" in w for w in warnings)


def test_a_later_tool_call_under_a_reused_call_id_is_kept(live_server, key, fake):
    # Some OpenAI-compatible servers answer every tool call with the same id (this fake: call_1).
    fake.push(tool_call("request_human", {"reason": "Refund for order A-1"}), prose("Asked a colleague about A-1."),
              tool_call("request_human", {"reason": "Refund for order B-2"}), prose("Asked a colleague about B-2."))

    run(live_server, key, fake, "oa-ids", "Refund A-1 please", "And refund B-2")

    async def items() -> list:
        async with AsyncSessionCtxClient(live_server.url, key) as client:
            return await SessionCtxSession("oa-ids", client).get_items()

    calls = [json.loads(item["arguments"])["reason"] for item in asyncio.run(items())
             if item.get("type") == "function_call"]
    assert calls == ["Refund for order A-1", "Refund for order B-2"]
