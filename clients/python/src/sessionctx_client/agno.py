"""agno (3.x) on sessionctx: a LearningStore whose context is the service's. Install with `sessionctx-client[agno]`.

    store = SessionCtxStore(SessionCtxClient(url, key), mode="planning")
    agent = Agent(model=..., db=SqliteDb(...),  # agno starts a LearningMachine only for an agent with a db
                  learning=LearningMachine(custom_stores={"sessionctx": store}), post_hooks=[store.capture_hook()])
                  # (with agent.arun: post_hooks=[store.acapture_hook()])

`recall` reads the session's context and its rendered <session_context> block, which `build_context` gives agno,
`process` posts the run's new messages, and `get_tools` offers `update_session_context` and `request_human`. agno
calls `process` while the model is still answering, with the messages known before its reply (its issue #8848), so the
store's `capture_hook()` posts the run again once the reply is there: the batch that ends with the reply is the one
that queues the service's update, which therefore reads the reply of the same turn. Keys made from agno's run id
and message ids keep the two posts, and a retried run, from storing a message twice.

agno keeps its own history, which a person's replies from the handoff desk are not part of: once a session has been
handed off, `recall` also reads the replies staff sent since the last handoff request (from the event feed) and
`build_context` shows them after the block, so the agent knows what the person told the user. `human_replies`
follows them on the feed as they are sent, for the process to deliver. If the service does not answer, recall gives
no context and posts are dropped, each with a warning, so the agent keeps working.

The async path (agno's `arun`) runs the same calls in a worker thread, tools included, so the event loop never
waits on sessionctx.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from ._integration import ask_for_human, keep_working
from .client import SessionCtxClient
from .errors import NotFoundError, VersionConflictError
from .handoff import STAFF_REPLY, human_replies, reply_of
from .types import Context, HumanReply, Mode, NewMessage

__all__ = ["Recalled", "SessionCtxStore"]

logger = logging.getLogger("sessionctx_client.agno")

_ROLES = {"user": "user", "assistant": "assistant", "tool": "tool"}
HANDOFF_REQUESTED = "handoff.requested"
# The latest replies the block shows; earlier ones of a long handoff are in the transcript (and, once the person
# hands the conversation back, in the service's summary).
MAX_REPLIES_SHOWN = 20


class Recalled(Context):
    """What `recall` gives `build_context`: the session's context, its rendered <session_context> block, and the
    replies staff sent since the last handoff request, oldest first."""

    prompt: str
    human_replies: list[HumanReply]


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

    def recall(self, session_id: str | None = None, **kwargs: Any) -> Recalled | None:
        """The session's context, or None for a new session or when the service does not answer."""
        if not session_id:
            return None
        with keep_working(logger, "running without the context of %s", session_id, missing_ok=True):
            context = self.client.get_context(session_id)
            # Read here, not in build_context: agno's async run calls build_context on its event loop, and arecall
            # runs this in a worker thread.
            prompt = self.client.get_prompt(session_id)
            # Only a session that has been handed off costs the third read.
            handed_off = context["status"] != "active" or bool(context["handoff_note"])
            return {**context, "prompt": prompt,
                    "human_replies": self.latest_replies(session_id) if handed_off else []}
        return None

    async def arecall(self, **kwargs: Any) -> Recalled | None:
        return await asyncio.to_thread(self.recall, **kwargs)

    def latest_replies(self, session_id: str) -> list[HumanReply]:
        """The replies staff sent since the session's last handoff request, oldest first (the last
        MAX_REPLIES_SHOWN)."""
        replies: list[HumanReply] = []
        for event in self.client.events(session_id=session_id, types=[HANDOFF_REQUESTED, STAFF_REPLY],
                                        follow=False):
            if event["type"] == HANDOFF_REQUESTED:
                replies = []
            else:
                replies = [*replies[-(MAX_REPLIES_SHOWN - 1):], reply_of(event)]
        return replies

    def human_replies(self, session_id: str, *, after: int = 0, wait: float = 25.0, follow: bool = True
                      ) -> Iterator[HumanReply]:
        """A person's replies to the user from the event feed (see sessionctx_client.handoff.human_replies)."""
        return human_replies(self.client, session_id, after=after, wait=wait, follow=follow)

    def build_context(self, data: Any) -> str:
        """The service's rendered <session_context> block for the context `recall` read, then the person's replies
        since the last handoff, if any."""
        if not data:
            return ""
        block = data.get("prompt", "")
        replies = data.get("human_replies") or []
        if replies:
            said = "\n".join(f"[{reply['author'] or 'staff'}, {reply['created_at']}] {reply['content']}"
                             for reply in replies)
            section = ("<human_replies>\nA person from support answered the user in this conversation (after its "
                       f"last handoff); these messages are not in your history:\n{said}\n</human_replies>")
            block = f"{block}\n{section}" if block else section
        return block

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
        with keep_working(logger, "%d messages of %s not stored", len(batch), session_id):
            posted = self.client.post_messages(session_id, batch, user_id=user_id, agent_id=agent_id, mode=self.mode)
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

    def acapture_hook(self) -> Callable[..., Awaitable[None]]:
        """capture_hook for agno's async run (`arun`): the post runs in a worker thread."""
        capture = self.capture_hook()

        async def sessionctx_capture(run_output: Any = None, agent: Any = None, session: Any = None,
                                     user_id: str | None = None, run_context: Any = None) -> None:
            await asyncio.to_thread(capture, run_output=run_output, agent=agent, session=session, user_id=user_id,
                                    run_context=run_context)

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
            return ask_for_human(client, session_id, reason, logger=logger, mode=mode, user_id=user_id,
                                 agent_id=agent_id)

        return [update_session_context, request_human]

    async def aget_tools(self, **kwargs: Any) -> list[Callable[..., Awaitable[str]]]:
        """get_tools for agno's async run: the same tools, each run in a worker thread."""
        return [in_thread(tool) for tool in self.get_tools(**kwargs)]


def in_thread(tool: Callable[..., str]) -> Callable[..., Awaitable[str]]:
    """An async tool that runs `tool` in a worker thread, with its name, signature and docstring (what agno shows
    the model)."""

    @functools.wraps(tool)
    async def run(*args: Any, **kwargs: Any) -> str:
        return await asyncio.to_thread(tool, *args, **kwargs)

    return run


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
