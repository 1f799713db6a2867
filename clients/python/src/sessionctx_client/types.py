"""The API's answers as TypedDicts: plain dicts at run time, with the API's field names (times are ISO 8601 strings)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Mode = Literal["summary", "planning"]
Role = Literal["user", "assistant", "system", "tool"]


class Context(TypedDict):
    """A session's snapshot and state (GET .../context, and every write's answer).

    A key without the read scope gets only session_id, mode, status, version and updated_at from a write.
    """

    session_id: str
    user_id: str
    agent_id: str
    team_id: str
    mode: str
    status: str
    assignee: str | None
    summary: str
    goal: str
    plan: list[str]
    progress: list[str]
    handoff_note: str
    version: int
    created_at: str
    updated_at: str


class Session(TypedDict):
    session_id: str
    user_id: str
    agent_id: str
    team_id: str
    mode: str
    status: str
    version: int
    update_policy: str
    created_at: str
    updated_at: str


class Revision(TypedDict):
    version: int
    source: str
    actor: str
    reason: str
    created_at: str
    changed_fields: list[str]
    snapshot: dict[str, Any]


class _NewMessageRequired(TypedDict):
    role: Role
    content: str


class NewMessage(_NewMessageRequired, total=False):
    """A message to post; a retried message with the same idempotency_key is stored once."""

    idempotency_key: str | None


class Message(TypedDict):
    seq: int
    role: str
    content: str
    idempotency_key: str | None
    author: str | None
    created_at: str


class StoredMessage(TypedDict):
    seq: int
    role: str
    idempotency_key: str | None


class RunRef(TypedDict):
    run_id: str
    status: str


class MessagesPosted(TypedDict):
    session_id: str
    created: bool
    stored: list[StoredMessage]
    duplicates: int
    update: RunRef | None


class Run(TypedDict):
    id: str
    session_id: str
    status: str
    trigger: str
    extractor: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    prompt_chars: int
    latency_ms: int
    model_calls: int
    attempts: int
    chunks: int
    error: str
    first_seq: int | None
    last_seq: int | None
    from_version: int | None
    to_version: int | None
    superseded_by: str | None
    request_id: str
    created_at: str
    started_at: str | None
    finished_at: str | None


class Event(TypedDict):
    id: int
    type: str
    session_id: str
    created_at: str
    data: dict[str, Any]


class HumanReply(TypedDict):
    """A person's reply to the user from the handoff desk (a `message.staff_reply` event); `seq` is its place in
    the transcript, `event_id` where to resume the feed."""

    event_id: int
    session_id: str
    seq: int
    content: str
    author: str | None
    created_at: str


class EventPage(TypedDict):
    events: list[Event]
    next_after: int
    has_more: bool


class Health(TypedDict):
    status: str
    checks: dict[str, str]


# Cursor pages: follow `next` (pass it as `cursor=`) until it is None.


class SessionPage(TypedDict):
    next: str | None
    previous: str | None
    results: list[Session]


class RevisionPage(TypedDict):
    next: str | None
    previous: str | None
    results: list[Revision]


class MessagePage(TypedDict):
    next: str | None
    previous: str | None
    results: list[Message]


class RunPage(TypedDict):
    next: str | None
    previous: str | None
    results: list[Run]
