"""The OpenAI Agents SDK (`openai-agents`) on sessionctx: the run's history in the messages API, the context block in
the agent's instructions, and a tool to ask for a human. Install with `sessionctx-client[openai-agents]`.

    client = AsyncSessionCtxClient(url, key)
    session = SessionCtxSession("chat-42", client, user_id="u-7", mode="planning")
    agent = Agent(name="support", instructions=session_context_instructions("You help with ...", session),
                  tools=[request_human_tool(session)])
    await Runner.run(agent, "Help me move to PostgreSQL", session=session)

Messages are the service's transcript: user, assistant and system turns are stored as text with their role (so the
service's model update reads them as a conversation); tool calls, their outputs and other items are stored as
`tool` messages holding the item's JSON and come back as the same items. If the service does not answer, reads give
no history and no context block and writes are dropped, each with a warning, so the agent keeps working.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agents import Agent, FunctionTool, RunContextWrapper, function_tool
from agents.items import TResponseInputItem
from agents.memory import SessionABC, SessionSettings
from agents.models.fake_id import FAKE_RESPONSES_ID

from ._integration import HANDOFF_DESCRIPTION, aask_for_human, keep_working
from .async_client import AsyncSessionCtxClient
from .errors import NotFoundError
from .types import Mode, NewMessage

__all__ = ["SessionCtxSession", "request_human_tool", "session_context_instructions"]

logger = logging.getLogger("sessionctx_client.openai_agents")

_TEXT_PARTS = {"input_text", "output_text", "text"}
_PAGE = 500  # the transcript's largest page


class SessionCtxSession(SessionABC):
    """An Agents SDK session whose items are the sessionctx session's messages."""

    def __init__(self, session_id: str, client: AsyncSessionCtxClient, *, user_id: str | None = None,
                 agent_id: str | None = None, mode: Mode | None = None,
                 session_settings: SessionSettings | None = None) -> None:
        self.session_id = session_id
        self.client = client
        self.user_id, self.agent_id, self.mode = user_id, agent_id, mode
        self.session_settings = session_settings

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The conversation in order (the latest `limit` items when given), staff replies included."""
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        with keep_working(logger, "running without history for %s", self.session_id, missing_ok=True) as reading:
            while True:
                page = await self.client.list_messages(self.session_id, limit=_PAGE, cursor=cursor)
                messages.extend(page["results"])
                cursor = page["next"]
                if cursor is None:
                    break
        if reading.failed:
            return []
        items = [item_of(message) for message in messages]
        if limit is None:
            return items
        return items[-limit:] if limit > 0 else []

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Post the items; the service queues its context update when a batch ends with the assistant's reply."""
        if not items:
            return
        with keep_working(logger, "%d items of %s not stored", len(items), self.session_id):
            await self.client.post_messages(self.session_id, [message_of(item) for item in items],
                                            user_id=self.user_id, agent_id=self.agent_id, mode=self.mode)

    async def pop_item(self) -> TResponseInputItem | None:
        # The transcript is the session's record (staff read it, the context was built from it): the API appends
        # and never removes one message. The SDK's rewind treats this as "could not rewind"; the idempotency keys
        # of model outputs already keep a retried run from storing them twice.
        raise NotImplementedError("sessionctx keeps every message of a session; use clear_session to erase it")

    async def clear_session(self) -> None:
        """Erase the session: its messages, its context and its history (the user's right to erasure)."""
        with contextlib.suppress(NotFoundError):  # already gone
            await self.client.delete_session(self.session_id)


def message_of(item: TResponseInputItem | dict[str, Any]) -> NewMessage:
    """A messages-API message for an SDK item: a text turn as itself, any other item as its JSON."""
    item = dict(item)
    text = _text_of(item)
    message: NewMessage
    if text is not None:
        role = "system" if item["role"] == "developer" else item["role"]
        message = {"role": role, "content": text}
    else:
        message = {"role": "tool", "content": json.dumps(item, sort_keys=True, ensure_ascii=False)}
    # Model outputs carry an id (a tool call and its output, its call_id): a retried run stores them once. User
    # input has none to go by, nor has a Chat Completions model's output, which the SDK gives a placeholder id.
    # The content is part of the key, as an OpenAI-compatible server need not make call ids unique (some answer
    # every call with the same one): a later call under a reused id is another message.
    item_id = item.get("id") if item.get("id") != FAKE_RESPONSES_ID else None
    item_id = item_id or item.get("call_id")
    if isinstance(item_id, str) and item_id:
        key = f"{item.get('type', 'message')}:{item_id}:{message['content']}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        message["idempotency_key"] = f"oa:{digest}"
    return message


def item_of(message: dict[str, Any]) -> TResponseInputItem:
    """The SDK item a stored message stands for."""
    role, content = message["role"], message["content"]
    if role == "tool":
        try:
            item = json.loads(content)
        except ValueError:
            item = None
        if isinstance(item, dict) and "type" in item:
            return item  # type: ignore[return-value]
        # A tool message another writer posted as text: the model still sees it.
        return {"role": "system", "content": f"Tool output: {content}"}
    return {"role": role, "content": content}  # type: ignore[return-value,typeddict-item]


def _text_of(item: dict[str, Any]) -> str | None:
    if item.get("type", "message") != "message" or item.get("role") not in ("user", "assistant", "system",
                                                                             "developer"):
        return None
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in _TEXT_PARTS for p in content):
        return "".join(p.get("text", "") for p in content)
    return None  # images, files, refusals: kept whole as JSON


Instructions = str | Callable[[RunContextWrapper[Any], Agent[Any]], str | Awaitable[str]]


def session_context_instructions(instructions: Instructions, session: SessionCtxSession
                                 ) -> Callable[[RunContextWrapper[Any], Agent[Any]], Awaitable[str]]:
    """Dynamic instructions: yours, then the session's <session_context> block (read on every run; an unchanged
    session costs a 304)."""

    async def dynamic(wrapper: RunContextWrapper[Any], agent: Agent[Any]) -> str:
        base = instructions
        if callable(base):
            base = base(wrapper, agent)
            if inspect.isawaitable(base):
                base = await base
        block = ""  # a new conversation has nothing to say yet
        with keep_working(logger, "running without the context of %s", session.session_id, missing_ok=True):
            block = await session.client.get_prompt(session.session_id)
        return f"{base}\n\n{block}" if block else str(base)

    return dynamic


def request_human_tool(session: SessionCtxSession, *, name: str = "request_human",
                       description: str | None = None) -> FunctionTool:
    """A tool the model calls to hand the conversation to a person (the service's handoff)."""

    async def request_human(reason: str) -> str:
        return await aask_for_human(session.client, session.session_id, reason, logger=logger, mode=session.mode,
                                    user_id=session.user_id, agent_id=session.agent_id)

    return function_tool(request_human, name_override=name, description_override=description or HANDOFF_DESCRIPTION)
