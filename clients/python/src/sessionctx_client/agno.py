"""agno (3.x) on sessionctx: a LearningStore whose context is the service's. Install with `sessionctx-client[agno]`.

    store = SessionCtxStore(SessionCtxClient(url, key), mode="planning")
    agent = Agent(model=..., db=SqliteDb(...),  # agno starts a LearningMachine only for an agent with a db
                  learning=LearningMachine(custom_stores={"sessionctx": store}), post_hooks=[store.capture_hook()])

`recall` reads the session's context, `build_context` gives the service's rendered <session_context> block, `process`
posts the run's new messages, and `get_tools` offers `update_session_context` and `request_human`. agno calls
`process` while the model is still answering, with the messages known before its reply (its issue #8848), so the
store's `capture_hook()` posts the run again once the reply is there: the batch that ends with the reply is the one
that queues the service's update, which therefore reads the reply of the same turn. Keys made from agno's run id
and message ids keep the two posts, and a retried run, from storing a message twice. If the service does not answer,
recall gives no context and posts are dropped, each with a warning, so the agent keeps working.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ._http import httpx
from .client import SessionCtxClient
from .errors import ConflictError, NotFoundError, ServiceUnavailableError, VersionConflictError
from .types import Context, Mode, NewMessage

__all__ = ["SessionCtxStore"]

logger = logging.getLogger("sessionctx_client.agno")

# Failures that mean "the service is not there right now", not "the request was wrong".
OUTAGES = (httpx.TransportError, ServiceUnavailableError)
_ROLES = {"user": "user", "assistant": "assistant", "tool": "tool"}


class SessionCtxStore:
    """An agno LearningStore (agno.learn.stores.protocol.LearningStore) backed by a sessionctx session."""

    def __init__(self, client: SessionCtxClient, *, mode: Mode | None = None, learning_type: str = "sessionctx"
                 ) -> None:
        self.client = client
        self.mode = mode
        self._learning_type = learning_type
        self.was_updated = False

    @property
    def learning_type(self) -> str:
        return self._learning_type

    @property
    def schema(self) -> Any:
        return Context

    def recall(self, session_id: str | None = None, **kwargs: Any) -> Context | None:
        """The session's context, or None for a new session or when the service does not answer."""
        if not session_id:
            return None
        try:
            return self.client.get_context(session_id)
        except NotFoundError:
            return None
        except OUTAGES as exc:
            logger.warning("sessionctx unavailable, running without the context of %s: %s", session_id, exc)
            return None

    async def arecall(self, **kwargs: Any) -> Context | None:
        return await asyncio.to_thread(self.recall, **kwargs)

    def build_context(self, data: Any) -> str:
        """The service's rendered <session_context> block for the context `recall` read."""
        if not data:
            return ""
        try:
            return self.client.get_prompt(data["session_id"])  # the read just made: a 304 from the client's cache
        except (NotFoundError, *OUTAGES) as exc:
            logger.warning("sessionctx unavailable, running without the context of %s: %s", data["session_id"], exc)
            return ""

    def instructions(self) -> str:
        return ("The <session_context> block is what this conversation has established so far; it is kept for you. "
                "When the user states or changes the goal or the plan, or a step is done, call "
                "update_session_context. When the user asks for a person, or you cannot help, call request_human.")

    def process(self, messages: list[Any], session_id: str | None = None, user_id: str | None = None,
                agent_id: str | None = None, run_context: Any = None, **kwargs: Any) -> None:
        """Post the run's own messages (not the history agno replayed, not the system prompt)."""
        self.was_updated = False
        run_id = getattr(run_context, "run_id", None)
        if not session_id or not run_id:
            return
        batch = new_messages(messages, run_id)
        if not batch:
            return
        try:
            posted = self.client.post_messages(session_id, batch, user_id=user_id, agent_id=agent_id, mode=self.mode)
        except OUTAGES as exc:
            logger.warning("sessionctx unavailable, %d messages of %s not stored: %s", len(batch), session_id, exc)
            return
        self.was_updated = bool(posted.get("stored"))

    async def aprocess(self, messages: list[Any], **kwargs: Any) -> None:
        await asyncio.to_thread(self.process, messages, **kwargs)

    def capture_hook(self) -> Callable[..., None]:
        """An agno post-hook that posts the finished run, reply included (see the module's docstring)."""

        def sessionctx_capture(run_output: Any = None, agent: Any = None, session: Any = None,
                               user_id: str | None = None, run_context: Any = None) -> None:
            self.process(list(getattr(run_output, "messages", None) or []),
                         session_id=getattr(session, "session_id", None), user_id=user_id,
                         agent_id=getattr(agent, "id", None), run_context=run_context)

        return sessionctx_capture

    def get_tools(self, session_id: str | None = None, user_id: str | None = None, agent_id: str | None = None,
                  **kwargs: Any) -> list[Callable[..., str]]:
        if not session_id:
            return []
        client, mode = self.client, self.mode

        def update_session_context(summary: str | None = None, goal: str | None = None,
                                   plan: list[str] | None = None, progress: list[str] | None = None) -> str:
            """Record what the conversation has established: a new summary, goal, plan (the steps) or progress
            (the steps done). Give only the fields that changed.

            Args:
                summary: What has been discussed, in a few sentences.
                goal: What the user is trying to do.
                plan: The steps to get there, in order.
                progress: The steps already done.
            """
            try:
                current = client.get_context(session_id)
            except NotFoundError:
                current = client.create_session(session_id, mode=mode, user_id=user_id, agent_id=agent_id)
            try:
                updated = client.update_context(session_id, expected_version=current["version"], summary=summary,
                                                goal=goal, plan=plan, progress=progress)
            except VersionConflictError:
                # Someone (the service's own update, a person, another agent) wrote first: nothing was changed. The
                # model gets the context as it is now, to decide again rather than overwrite unseen changes.
                return ("Not saved: the session context changed meanwhile. It is now:\n"
                        f"{client.get_prompt(session_id)}\nCall update_session_context again if your change "
                        "still applies.")
            return f"Saved (version {updated['version']})."

        def request_human(reason: str) -> str:
            """Hand the conversation to a human support agent. Use it when the user asks for a person or when you
            cannot help.

            Args:
                reason: Why, in one sentence.
            """
            try:
                context = client.request_handoff(session_id, reason)
            except NotFoundError:
                client.create_session(session_id, mode=mode, user_id=user_id, agent_id=agent_id)
                context = client.request_handoff(session_id, reason)
            except ConflictError:
                return "A person already owns this conversation; they will answer the user here."
            return (f"A person has been asked to take over (status {context['status']}). Tell the user someone will "
                    "answer here shortly.")

        return [update_session_context, request_human]

    async def aget_tools(self, **kwargs: Any) -> list[Callable[..., str]]:
        return self.get_tools(**kwargs)


def new_messages(messages: Sequence[Any], run_id: str) -> list[NewMessage]:
    """The messages-API batch for a run's messages, each with a key from agno's run and message ids."""
    batch: list[NewMessage] = []
    inputs = 0
    for message in messages:
        role = _ROLES.get(getattr(message, "role", ""))
        if role is None or getattr(message, "from_history", False):
            continue
        content = message.get_content_string() if hasattr(message, "get_content_string") else str(message.content)
        if role == "assistant" and not content:
            continue  # a turn that only called tools: its tool messages carry the results
        if role == "user":
            # A retried run builds its input message again under a new id; its place in the run is what stays.
            identity = f"{run_id}:input:{inputs}"
            inputs += 1
        else:
            identity = f"{run_id}:{message.id}"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:40]
        batch.append({"role": role, "content": content, "idempotency_key": f"agno:{digest}"})
    return batch
