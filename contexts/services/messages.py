"""The conversation's transcript: batches appended in order, each message stored once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from ..exceptions import ApplicationError, InvalidInput, NotFound
from ..extraction.policy import TURN, update_if_due
from ..models import ExtractionRun, Message, Project, SessionContext
from .sessions import session_get_or_create


@dataclass
class AppendResult:
    stored: list[Message] = field(default_factory=list)
    duplicates: list[Message] = field(default_factory=list)

    @property
    def completes_turn(self) -> bool:
        """A newly stored batch that ends with the assistant's reply completes a turn."""
        return bool(self.stored) and self.stored[-1].role == Message.Role.ASSISTANT


@dataclass
class PostResult:
    session: SessionContext
    created: bool
    appended: AppendResult
    update: ExtractionRun | None  # the context update this batch queued, if any


def _refused(said: str, i: int | None = None, field: str | None = None) -> dict[str, Any]:
    """`details` of a refused batch, in the API serializers' shape: {"fields": {"messages": {"0": {field: [said]}}}}."""
    detail: Any = [said]
    if field is not None:
        detail = {field: detail}
    if i is not None:
        detail = {str(i): detail}
    return {"fields": {"messages": detail}}


class IdempotencyKeyReused(ApplicationError):
    """A message under a key already used for a different message (the IETF idempotency-key draft's 422)."""

    code = "idempotency_key_reused"
    status = 422


def _validate_message(i: int, m: Any) -> dict[str, Any]:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise InvalidInput(f"{where} must be an object.", details=_refused("Must be an object.", i))
    unknown = sorted(set(m) - {"role", "content", "idempotency_key"})
    if unknown:
        raise InvalidInput(f"{where} has unknown fields: {', '.join(unknown)}.",
                           details={"fields": {"messages": {str(i): {name: ["Unknown field."] for name in unknown}}}})
    role, content, key = m.get("role"), m.get("content"), m.get("idempotency_key")
    if role not in Message.Role.values:
        said = f"One of {', '.join(Message.Role.values)}."
        raise InvalidInput(f"{where}.role must be one of {', '.join(Message.Role.values)}.",
                           details=_refused(said, i, "role"))
    limit = settings.SESSIONCTX_MAX_MESSAGE_CHARS
    if not isinstance(content, str) or len(content) > limit:
        raise InvalidInput(f"{where}.content must be a string of at most {limit} characters.",
                           details=_refused(f"A string of at most {limit} characters.", i, "content"))
    if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
        raise InvalidInput(f"{where}.idempotency_key must be a string of 1-255 characters.",
                           details=_refused("A string of 1-255 characters.", i, "idempotency_key"))
    return {"role": role, "content": content, "idempotency_key": key}


def _validate_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list.", details=_refused("A non-empty list is required."))
    if len(messages) > settings.SESSIONCTX_MAX_MESSAGES_PER_POST:
        limit = settings.SESSIONCTX_MAX_MESSAGES_PER_POST
        raise InvalidInput(f"At most {limit} messages per post.",
                           details=_refused(f"At most {limit} messages per post."))
    return [_validate_message(i, m) for i, m in enumerate(messages)]


@transaction.atomic
def messages_append(*, session: SessionContext, messages: list[dict[str, Any]], author=None) -> AppendResult:
    """Store a batch in order; a message whose idempotency key is already stored is not stored twice.
    `author`: the staff member who wrote the batch (a reply on the handoff desk)."""
    batch = _validate_messages(messages)
    # The row lock serialises sequence numbers per session (SQLite: the IMMEDIATE transaction does).
    locked = SessionContext.objects.select_for_update().only("id", "last_message_seq").filter(pk=session.pk).first()
    if locked is None:  # erased since the caller read it
        raise NotFound(f"Session {session.session_id!r} does not exist.", details={"session_id": session.session_id})
    keys = [m["idempotency_key"] for m in batch if m["idempotency_key"]]
    existing = ({m.idempotency_key: m for m in Message.objects.filter(session_id=session.pk, idempotency_key__in=keys)}
                if keys else {})
    result = AppendResult()
    seen: dict[str, Message] = {}
    to_store = []
    seq = locked.last_message_seq
    for i, m in enumerate(batch):
        key = m["idempotency_key"]
        earlier = existing.get(key) or seen.get(key) if key else None
        if earlier is not None:
            if (earlier.role, earlier.content) != (m["role"], m["content"]):
                # Not a retry but another message under a used key (a turn counter that started again): taking
                # it for a copy would drop it without a word.
                where = f"seq {earlier.seq}" if earlier.pk else "earlier in this batch"
                raise IdempotencyKeyReused(f"messages[{i}].idempotency_key {key!r} is already the key of another "
                                           f"message ({where}): nothing was stored. Give each message its own key.",
                                           details={**_refused("Already used for another message.", i,
                                                               "idempotency_key"),
                                                    "idempotency_key": key})
            # A retry (or the same key twice in one batch): stored once, and the copy counted, so stored +
            # duplicates is the batch.
            result.duplicates.append(earlier)
            continue
        seq += 1
        message = Message(session_id=session.pk, seq=seq, author=author, **m)
        if key:
            seen[key] = message
        to_store.append(message)
    if to_store:
        result.stored = Message.objects.bulk_create(to_store)
        SessionContext.objects.filter(pk=session.pk).update(last_message_seq=seq)
    return result


@transaction.atomic
def messages_post(*, session_id: str, messages: list[dict[str, Any]], project: Project | int | None = None,
                  **owners: Any) -> PostResult:
    """An agent's batch: the session created if needed, the messages stored, and a context update queued when
    the batch completes a turn and the update policy says so (SESSIONCTX_AUTO_UPDATE, contexts.extraction.policy).
    One transaction: a refused batch leaves no session behind, and the update reaches the workers only once the
    messages are committed."""
    try:
        session, created = session_get_or_create(session_id=session_id, project=project, **owners)
        appended = messages_append(session=session, messages=messages)
    except NotFound:
        # Erased (retention, a user's erasure) between finding it and writing to it: the erasure committed first,
        # so the post comes after it and starts the session afresh, as a post to an unknown id does.
        session, created = session_get_or_create(session_id=session_id, project=project, **owners)
        appended = messages_append(session=session, messages=messages)
    update = None
    if appended.completes_turn:
        # The session's update policy decides (every turn, every N, past T tokens; idle ones wait for the sweep).
        session.refresh_from_db(fields=["last_message_seq", "cursor_seq", "status", "update_policy"])
        update = update_if_due(session=session, event=TURN, trigger="auto")
    return PostResult(session=session, created=created, appended=appended, update=update)
