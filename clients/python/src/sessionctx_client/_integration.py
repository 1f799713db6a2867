"""What the framework integrations (agno, langchain, openai_agents) share: what they do when sessionctx does not
answer, and the handoff tool's request and its answer to the model."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from ._http import httpx
from .async_client import AsyncSessionCtxClient
from .client import SessionCtxClient
from .errors import ConflictError, NotFoundError, ServiceUnavailableError

# Failures that mean "the service is not there right now", not "the request was wrong": a connection error or
# timeout, or a 503 once the client's retries are spent.
OUTAGES = (httpx.TransportError, ServiceUnavailableError)

HANDOFF_DESCRIPTION = ("Hand the conversation to a human support agent. Use it when the user asks for a person or "
                       "when you cannot help; give the reason in one sentence.")
ALREADY_OWNED = "A person already owns this conversation; they will answer the user here."
UNREACHABLE = ("No person could be asked: the support desk does not answer right now. Tell the user so, and to ask "
               "again in a few minutes.")


class keep_working:  # noqa: N801 - used like contextlib.suppress
    """Leave the block, with a warning, when sessionctx does not answer, so the agent goes on without it:

        with keep_working(logger, "running without the context of %s", session_id, missing_ok=True):
            return client.get_prompt(session_id)
        return ""

    With `missing_ok`, a NotFoundError (a session nothing was posted to yet) leaves the block too, silently. Any
    other error (a bad key, a refused request) is raised. It works around an `await` as well."""

    def __init__(self, logger: logging.Logger, doing: str, *args: Any, missing_ok: bool = False) -> None:
        self.logger, self.doing, self.args, self.missing_ok = logger, doing, args, missing_ok
        self.failed = False

    def __enter__(self) -> keep_working:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        if exc is None:
            return False
        if self.missing_ok and isinstance(exc, NotFoundError):
            self.failed = True
            return True
        if isinstance(exc, OUTAGES):
            self.logger.warning(f"sessionctx unavailable, {self.doing}: %s", *self.args, exc)
            self.failed = True
            return True
        return False


def handoff_requested(context: dict[str, Any]) -> str:
    return (f"A person has been asked to take over (status {context['status']}). Tell the user someone will answer "
            "here shortly.")


def ask_for_human(client: SessionCtxClient, session_id: str, reason: str, *, logger: logging.Logger,
                  **session: Any) -> str:
    """Request the handoff (creating the session, with `session`'s mode/user_id/agent_id, if it is new); what the
    handoff tool tells the model. When sessionctx does not answer, the model is told so (and the agent goes on)."""
    with keep_working(logger, "no person asked for %s", session_id):
        try:
            context = client.request_handoff(session_id, reason)
        except NotFoundError:
            client.create_session(session_id, **session)
            context = client.request_handoff(session_id, reason)
        except ConflictError:
            return ALREADY_OWNED
        return handoff_requested(context)
    return UNREACHABLE


async def aask_for_human(client: AsyncSessionCtxClient, session_id: str, reason: str, *, logger: logging.Logger,
                         **session: Any) -> str:
    """ask_for_human with the async client."""
    with keep_working(logger, "no person asked for %s", session_id):
        try:
            context = await client.request_handoff(session_id, reason)
        except NotFoundError:
            await client.create_session(session_id, **session)
            context = await client.request_handoff(session_id, reason)
        except ConflictError:
            return ALREADY_OWNED
        return handoff_requested(context)
    return UNREACHABLE
