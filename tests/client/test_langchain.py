"""The LangChain integration, driven by a real langchain-core chain with a real ChatOpenAI model (langchain-core and
langchain-openai, pinned in requirements-dev) pointed at the tests' fake OpenAI-compatible server, against a live
sessionctx server."""

from __future__ import annotations

import json
import time

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_openai import ChatOpenAI
from sessionctx_client import SessionCtxClient, human_replies
from sessionctx_client.langchain import SessionCtxChatMessageHistory, prepend_session_context, request_human_tool

from contexts import services
from contexts.models import Message, SessionContext
from contexts.services import Actor
from tests.factories import make_api_key, make_session, make_user
from tests.fake_openai import FakeOpenAI, Reply, prose


@pytest.fixture
def fake():
    with FakeOpenAI(default=None) as server:
        yield server


@pytest.fixture
def key(live_server):
    return make_api_key("read", "write", name="langchain")[1]


def chat_for(client: SessionCtxClient, fake: FakeOpenAI, **history_options) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You help teams move databases."), MessagesPlaceholder("history"), ("human", "{question}")])
    model = ChatOpenAI(model="fake-model", base_url=fake.url, api_key="k", max_retries=0)
    return RunnableWithMessageHistory(
        prompt | prepend_session_context(client) | model,
        lambda session_id: SessionCtxChatMessageHistory(session_id, client, **history_options),
        input_messages_key="question", history_messages_key="history")


def ask(live_server, key, fake, session_id: str, *questions: str, **history_options) -> list[str]:
    """Each question asked through a new chain over a new client, as separate processes would; the answers."""
    answers = []
    for question in questions:
        with SessionCtxClient(live_server.url, key) as client:
            reply = chat_for(client, fake, **history_options).invoke(
                {"question": question}, {"configurable": {"session_id": session_id}})
            answers.append(reply.content)
    return answers


def stored(session_id: str) -> list[tuple[str, str]]:
    return list(Message.objects.filter(session__session_id=session_id).order_by("seq").values_list("role", "content"))


def test_the_context_block_comes_first_and_the_turn_is_stored(live_server, key, fake):
    make_session("lc-1", content={"goal": "Move to PostgreSQL", "plan": ["Dump the schema", "Load data"]})
    fake.push(prose("First, dump the schema with pg_dump."))

    assert ask(live_server, key, fake, "lc-1", "Where do I start?") == ["First, dump the schema with pg_dump."]

    (request,) = fake.requests
    first, second = request["messages"][:2]
    assert first["role"] == "system" and first["content"].startswith("<session_context>")
    assert "Goal: Move to PostgreSQL" in first["content"]
    assert second == {"role": "system", "content": "You help teams move databases."}
    assert stored("lc-1") == [("user", "Where do I start?"), ("assistant", "First, dump the schema with pg_dump.")]


def test_a_second_process_continues_the_conversation_from_the_service(live_server, key, fake):
    fake.push(prose("Dump the schema."), prose("Then load the data."))

    ask(live_server, key, fake, "lc-2", "Help me move to PostgreSQL", "And then?", user_id="u-7", mode="planning")

    second = fake.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in second if m["role"] != "system"] == [
        ("user", "Help me move to PostgreSQL"), ("assistant", "Dump the schema."), ("user", "And then?")]
    session = SessionContext.objects.get(session_id="lc-2")
    assert (session.user_id, session.mode, session.last_message_seq) == ("u-7", "planning", 4)


def test_a_retried_add_stores_the_models_message_once(live_server, key):
    with SessionCtxClient(live_server.url, key) as client:
        history = SessionCtxChatMessageHistory("lc-3", client)
        reply = AIMessage("Let me check.", id="chatcmpl-9")
        history.add_messages([HumanMessage("Is my order shipped?"), reply])
        history.add_messages([reply])  # a retried add
        history.add_message(AIMessage("It shipped today.", id="chatcmpl-9"))  # a server that reuses ids
        messages = history.messages

    assert stored("lc-3") == [("user", "Is my order shipped?"), ("assistant", "Let me check."),
                              ("assistant", "It shipped today.")]
    assert [(type(m), m.content) for m in messages] == [
        (HumanMessage, "Is my order shipped?"), (AIMessage, "Let me check."), (AIMessage, "It shipped today.")]


def test_clear_erases_the_session(live_server, key, fake):
    fake.push(prose("Hello."))
    ask(live_server, key, fake, "lc-4", "Hi")

    with SessionCtxClient(live_server.url, key) as client:
        history = SessionCtxChatMessageHistory("lc-4", client)
        history.clear()
        history.clear()  # already gone: no error
        assert history.messages == []
    assert not SessionContext.objects.filter(session_id="lc-4").exists()


def test_the_chain_keeps_working_when_the_service_does_not_answer(fake, caplog):
    fake.push(prose("Still here."))

    # A port nothing listens on: every call to the service fails to connect.
    with SessionCtxClient("http://127.0.0.1:9", "sck_x", timeout=2) as client:
        reply = chat_for(client, fake).invoke({"question": "Hi"}, {"configurable": {"session_id": "lc-5"}})

    assert reply.content == "Still here."
    assert fake.requests[0]["messages"] == [{"role": "system", "content": "You help teams move databases."},
                                            {"role": "user", "content": "Hi"}]
    warnings = [r.getMessage() for r in caplog.records if r.name == "sessionctx_client.langchain"]
    assert any("without history" in w for w in warnings) and any("without the context" in w for w in warnings)
    assert any("not stored" in w for w in warnings)


def test_prepend_takes_an_explicit_session_and_plain_messages(live_server, key):
    make_session("lc-6", content={"summary": "The customer is moving to PostgreSQL."})
    with SessionCtxClient(live_server.url, key) as client:
        messages = prepend_session_context(client, "lc-6").invoke([("human", "Hi")])
        fresh = prepend_session_context(client, "lc-new").invoke("Hi")

    assert isinstance(messages[0], SystemMessage) and "moving to PostgreSQL" in messages[0].content
    assert messages[1:] == [HumanMessage("Hi")]
    assert fresh == [HumanMessage("Hi")]  # nothing known yet: no block


def tool_call(name: str, arguments: dict) -> Reply:
    return Reply(body={
        "id": "chatcmpl-tool", "object": "chat.completion", "created": int(time.time()), "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "refusal": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def agent_turn(live_server, key, fake, session_id: str, question: str) -> str:
    """One turn of a tool-calling agent (langchain-core's loop: a model with bound tools; each tool call answered
    with the tool's message), in a new process: a new client, its history the session's."""
    with SessionCtxClient(live_server.url, key) as client:
        history = SessionCtxChatMessageHistory(session_id, client)
        tools = {tool.name: tool for tool in [request_human_tool(client)]}
        prompt = ChatPromptTemplate.from_messages([("system", "You help customers."), MessagesPlaceholder("messages")])
        model = ChatOpenAI(model="fake-model", base_url=fake.url, api_key="k", max_retries=0)
        agent = prompt | prepend_session_context(client) | model.bind_tools(list(tools.values()))
        config = {"configurable": {"session_id": session_id}}
        turn: list[BaseMessage] = [HumanMessage(question)]
        while True:
            reply = agent.invoke({"messages": [*history.messages, *turn]}, config)
            turn.append(reply)
            if not reply.tool_calls:
                break
            turn.extend(tools[call["name"]].invoke(call, config) for call in reply.tool_calls)
        history.add_messages(turn)
        return reply.content


def test_the_agent_hands_off_and_a_persons_reply_comes_back_from_the_feed_and_in_its_history(live_server, key, fake):
    make_session("lc-7")
    fake.push(tool_call("request_human", {"reason": "Customer wants a refund"}),
              prose("I've asked a colleague to help; they will answer here."))

    assert agent_turn(live_server, key, fake, "lc-7", "I want my money back") == (
        "I've asked a colleague to help; they will answer here.")
    session = SessionContext.objects.get(session_id="lc-7")
    assert (session.status, session.handoff_reason) == ("handoff_requested", "Customer wants a refund")
    tool_output = next(m for m in fake.requests[1]["messages"] if m["role"] == "tool")
    assert "handoff_requested" in tool_output["content"]

    # A person takes it and answers the customer from the desk.
    erin = Actor.for_user(make_user("erin"))
    services.handoff_claim(session=session, actor=erin)
    services.handoff_reply(session=SessionContext.objects.get(session_id="lc-7"), content="Refund issued, 3-5 days.",
                           actor=erin)

    # The agent's process learns of it from the event feed, to deliver it to the customer...
    with SessionCtxClient(live_server.url, key) as client:
        (reply,) = human_replies(client, "lc-7", follow=False)
    assert (reply["content"], reply["author"]) == ("Refund issued, 3-5 days.", "erin")

    # ...and the agent's next turn has it in its history, after its own turn (the tool-only call left out).
    fake.push(prose("It takes 3-5 days."))
    agent_turn(live_server, key, fake, "lc-7", "When will I see it?")
    block, *messages = fake.requests[-1]["messages"]
    assert block["content"].startswith("<session_context>")  # the service's update of the first turn
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "You help customers."),
        ("user", "I want my money back"),
        ("system", f"Tool output: {tool_output['content']}"),
        ("assistant", "I've asked a colleague to help; they will answer here."),
        ("assistant", "Refund issued, 3-5 days."),
        ("user", "When will I see it?")]
    assert stored("lc-7")[-2:] == [("user", "When will I see it?"), ("assistant", "It takes 3-5 days.")]


def test_a_streamed_reply_is_stored_as_the_assistants_turn_and_queues_the_update(live_server, key, fake):
    fake.push(prose("Dump the schema first, then the data."))

    with SessionCtxClient(live_server.url, key) as client:
        chunks = list(chat_for(client, fake).stream({"question": "Where do I start?"},
                                                    {"configurable": {"session_id": "lc-stream"}}))

    assert "".join(chunk.content for chunk in chunks) == "Dump the schema first, then the data."
    assert len(chunks) > 1 and fake.requests[0]["stream"] is True
    assert stored("lc-stream") == [("user", "Where do I start?"),
                                   ("assistant", "Dump the schema first, then the data.")]
    session = SessionContext.objects.get(session_id="lc-stream")
    assert session.runs.exists(), "the turn queued no update"


def test_the_handoff_tool_tells_the_model_no_person_was_asked_when_the_service_does_not_answer(caplog):
    # A port nothing listens on: every call to the service fails to connect.
    with SessionCtxClient("http://127.0.0.1:9", "sck_x", timeout=2) as client:
        answer = request_human_tool(client).invoke(
            {"type": "tool_call", "id": "call_1", "name": "request_human", "args": {"reason": "Wants a person"}},
            {"configurable": {"session_id": "lc-down"}})

    assert answer.tool_call_id == "call_1" and "No person could be asked" in answer.content
    assert any("no person asked for lc-down" in r.getMessage() for r in caplog.records
               if r.name == "sessionctx_client.langchain")
