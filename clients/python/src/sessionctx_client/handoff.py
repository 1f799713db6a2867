"""A person's replies to the user, from the event feed: what staff answered on the handoff desk while they owned a
conversation, for the agent's process to deliver to the user (and for the agent to know what was said).

    for reply in human_replies(client, "chat-42"):      # long-polls; resume later with after=reply["event_id"]
        send_to_user(reply["content"])

Every integration's history or context shows these replies to the agent as well; this is how a process that is
waiting for the person learns of them as they are sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from .async_client import AsyncSessionCtxClient
from .client import SessionCtxClient
from .types import Event, HumanReply

__all__ = ["STAFF_REPLY", "ahuman_replies", "human_replies", "reply_of"]

STAFF_REPLY = "message.staff_reply"


def human_replies(client: SessionCtxClient, session_id: str, *, after: int = 0, wait: float = 25.0,
                  follow: bool = True) -> Iterator[HumanReply]:
    """The session's replies from staff after the event id `after`, oldest first; with `follow`, waits for new
    ones forever (long-polling `wait` seconds at a time), else stops when none are left."""
    for event in client.events(after=after, session_id=session_id, types=STAFF_REPLY, wait=wait, follow=follow):
        yield reply_of(event)


async def ahuman_replies(client: AsyncSessionCtxClient, session_id: str, *, after: int = 0, wait: float = 25.0,
                         follow: bool = True) -> AsyncIterator[HumanReply]:
    """human_replies with the async client."""
    async for event in client.events(after=after, session_id=session_id, types=STAFF_REPLY, wait=wait,
                                     follow=follow):
        yield reply_of(event)


def reply_of(event: Event | dict[str, Any]) -> HumanReply:
    """The reply a `message.staff_reply` event carries."""
    data = event["data"]
    return {"event_id": event["id"], "session_id": event["session_id"], "seq": data["seq"],
            "content": data["content"], "author": data.get("author"), "created_at": data["created_at"]}
