"""LangChain (`langchain-core`) on sessionctx: a chat message history backed by the messages API, and a runnable that
prepends the session's context block as a system message. Install with `sessionctx-client[langchain]`.

    client = SessionCtxClient(url, key)
    chain = prompt | prepend_session_context(client) | model
    chat = RunnableWithMessageHistory(chain, lambda session_id: SessionCtxChatMessageHistory(session_id, client),
                                      input_messages_key="question", history_messages_key="history")
    chat.invoke({"question": "Help me move to PostgreSQL"}, {"configurable": {"session_id": "chat-42"}})

Human, AI and system messages are stored as text with their role (user, assistant, system) so the service's model
update reads a plain conversation; a tool message is stored as a `tool` message, and an AI message that only calls
tools is left out (its tool messages carry the results). `request_human_tool(client)` is the handoff as a LangChain
tool; a person's reply from the desk reads back as an AI message of the history, and `human_replies` (from
`sessionctx_client`) follows them on the event feed as they are sent. If the service does not answer, the history
reads as empty, the context block is left out and new messages are dropped, each with a warning, so the chain keeps
working.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import StructuredTool

from ._integration import HANDOFF_DESCRIPTION, ask_for_human, keep_working
from .client import SessionCtxClient
from .errors import NotFoundError
from .types import Mode, NewMessage

__all__ = ["SessionCtxChatMessageHistory", "prepend_session_context", "request_human_tool"]

logger = logging.getLogger("sessionctx_client.langchain")

_PAGE = 500  # the transcript's largest page
_ROLES = ((HumanMessage, "user"), (AIMessage, "assistant"), (SystemMessage, "system"), (ToolMessage, "tool"))


class SessionCtxChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history whose messages are the sessionctx session's transcript."""

    def __init__(self, session_id: str, client: SessionCtxClient, *, user_id: str | None = None,
                 agent_id: str | None = None, mode: Mode | None = None) -> None:
        self.session_id = session_id
        self.client = client
        self.user_id, self.agent_id, self.mode = user_id, agent_id, mode

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The conversation in order, a person's replies from the desk included (as AI messages)."""
        stored: list[dict[str, Any]] = []
        cursor: str | None = None
        with keep_working(logger, "running without history for %s", self.session_id, missing_ok=True) as reading:
            while True:
                page = self.client.list_messages(self.session_id, limit=_PAGE, cursor=cursor)
                stored.extend(page["results"])
                cursor = page["next"]
                if cursor is None:
                    break
        if reading.failed:
            return []
        return [message_of(message) for message in stored]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Post the messages in one batch; the service queues its context update when it ends with the AI's reply."""
        batch = [new_message(message) for message in messages]
        # An AI turn that only called tools has no text: its tool messages carry the results.
        batch = [message for message in batch if message["content"] or message["role"] != "assistant"]
        if not batch:
            return
        with keep_working(logger, "%d messages of %s not stored", len(batch), self.session_id):
            self.client.post_messages(self.session_id, batch, user_id=self.user_id, agent_id=self.agent_id,
                                      mode=self.mode)

    def clear(self) -> None:
        """Erase the session: its messages, its context and its history (the user's right to erasure)."""
        with contextlib.suppress(NotFoundError):  # already gone
            self.client.delete_session(self.session_id)


def new_message(message: BaseMessage) -> NewMessage:
    """A messages-API message for a LangChain message."""
    # By class, not `type`: a streamed reply is an AIMessageChunk (type "AIMessageChunk"), and is the AI's turn.
    role = next((role for kind, role in _ROLES if isinstance(message, kind)), "system")
    content = message.text if not isinstance(message.content, str) else message.content
    posted: NewMessage = {"role": role, "content": content}  # type: ignore[typeddict-item]
    # A model's message carries the provider's id: a retried add stores it once. The content is part of the key
    # because an OpenAI-compatible server need not make ids unique (some answer every call with the same one).
    if message.id:
        digest = hashlib.sha256(f"{message.type}:{message.id}:{content}".encode()).hexdigest()[:40]
        posted["idempotency_key"] = f"lc:{digest}"
    return posted


def message_of(stored: dict[str, Any]) -> BaseMessage:
    """The LangChain message a stored message stands for."""
    role, content = stored["role"], stored["content"]
    if role == "user":
        return HumanMessage(content)
    if role == "assistant":
        return AIMessage(content)
    if role == "tool":
        # The call it answered is not kept; a system note keeps the model from expecting a matching tool call.
        return SystemMessage(f"Tool output: {content}")
    return SystemMessage(content)


def prepend_session_context(client: SessionCtxClient, session_id: str | None = None) -> RunnableLambda:
    """A runnable that puts the session's <session_context> block first, as a system message, in the messages it is
    given (a prompt value, a list of messages or a string). The session is `session_id`, else the run's
    `configurable["session_id"]` (as RunnableWithMessageHistory passes it)."""

    def prepend(value: PromptValue | Sequence[Any] | str, config: RunnableConfig) -> list[BaseMessage]:
        if isinstance(value, PromptValue):
            messages = value.to_messages()
        elif isinstance(value, str):
            messages = [HumanMessage(value)]
        else:
            messages = convert_to_messages(value)
        session = session_id or (config.get("configurable") or {}).get("session_id")
        if not session:
            raise ValueError("prepend_session_context needs a session_id, or configurable['session_id'] in the run")
        block = ""  # a new conversation has nothing to say yet
        with keep_working(logger, "running without the context of %s", session, missing_ok=True):
            block = client.get_prompt(session)
        return [SystemMessage(block), *messages] if block else messages

    return RunnableLambda(prepend, name="prepend_session_context")


def request_human_tool(client: SessionCtxClient, session_id: str | None = None, *, name: str = "request_human",
                       description: str | None = None, user_id: str | None = None, agent_id: str | None = None,
                       mode: Mode | None = None) -> StructuredTool:
    """A tool the model calls to hand the conversation to a person (the service's handoff). The session is
    `session_id`, else the run's `configurable["session_id"]`; `user_id`, `agent_id` and `mode` are used if the
    session is new."""

    def request_human(reason: str, config: RunnableConfig) -> str:
        session = session_id or (config.get("configurable") or {}).get("session_id")
        if not session:
            raise ValueError("request_human_tool needs a session_id, or configurable['session_id'] in the run")
        return ask_for_human(client, session, reason, logger=logger, mode=mode, user_id=user_id, agent_id=agent_id)

    async def arequest_human(reason: str, config: RunnableConfig) -> str:
        return await asyncio.to_thread(request_human, reason, config)  # the client is the blocking one

    return StructuredTool.from_function(func=request_human, coroutine=arequest_human, name=name,
                                        description=description or HANDOFF_DESCRIPTION)

