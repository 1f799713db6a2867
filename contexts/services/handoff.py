"""A person takes a conversation over from the agent, answers the customer, and hands it back: each status
change is a snapshot change (a new version and revision, through snapshot_write), a handoff event on the staff
timeline and an event on the agents' feed. While a person owns a conversation, only they reply, hand it back
or close it; an editor may take it over from them, which is recorded."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..exceptions import ApplicationError, InvalidInput, StateConflict
from ..extraction.runs import extraction_request
from ..models import Event, HandoffEvent, Message, Revision, SessionContext, Status
from ..snapshot import NOTE_MAX_CHARS, text_limit, validate_reason
from .actors import Actor
from .events import event_record
from .messages import messages_append
from .snapshots import session_locked, snapshot_write

# The agents' feed names each staff-timeline kind.
_FEED = {
    HandoffEvent.Kind.REQUESTED: Event.Type.HANDOFF_REQUESTED,
    HandoffEvent.Kind.CLAIMED: Event.Type.HANDOFF_TAKEN,
    HandoffEvent.Kind.RELEASED: Event.Type.HANDOFF_RELEASED,
    HandoffEvent.Kind.CLOSED: Event.Type.HANDOFF_CLOSED,
}


def _event(session: SessionContext, kind: str, actor: Actor, note: str = "") -> HandoffEvent:
    return HandoffEvent.objects.create(session_id=session.pk, kind=kind, actor=actor.label, actor_user=actor.user,
                                       note=note)


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def _status_change(current: SessionContext, *, actor: Actor, reason: str, status: str, event: str,
                   values: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   feed: str | None = None, feed_data: dict[str, Any] | None = None) -> SessionContext:
    session = snapshot_write(current, values={**(values or {}), "status": status}, source=Revision.Source.HANDOFF,
                             actor=actor, reason=reason, extra=extra)
    _event(session, event, actor, reason)
    event_record(session=session, type=feed or _FEED[event],
                 data={"status": session.status, "version": session.version, "actor": actor.label,
                       "assignee": _username(session.assignee), "reason": reason, **(feed_data or {})})
    return session


def _owner_only(current: SessionContext, actor: Actor, doing: str) -> None:
    """While a person owns the conversation, only they may `doing` (409 naming the owner)."""
    if current.status == Status.HUMAN and current.assignee_id != getattr(actor.user, "pk", None):
        owner = _username(current.assignee) or "someone else"
        raise StateConflict(f"{owner} owns this conversation: only they can {doing} while it is theirs.",
                            code="not_owner", details={"assignee": owner})


@transaction.atomic
def handoff_request(*, session: SessionContext, reason: str, actor: Actor) -> SessionContext:
    """The agent asks for a human: the session joins the staff queue. Asking twice is the same request."""
    reason = validate_reason(reason)
    current = session_locked(session)
    if current.status == Status.HUMAN:
        raise StateConflict("A person already owns this conversation.", details={"status": current.status})
    if current.status == Status.HANDOFF_REQUESTED:
        return current
    return _status_change(current, actor=actor, reason=reason, status=Status.HANDOFF_REQUESTED,
                          event=HandoffEvent.Kind.REQUESTED,
                          extra={"handoff_reason": reason, "handoff_requested_at": timezone.now()})


@transaction.atomic
def handoff_claim(*, session: SessionContext, actor: Actor) -> SessionContext:
    """A person takes the conversation over; of two taking at once, one wins (the row lock orders them)."""
    current = session_locked(session)
    if current.status == Status.HUMAN:
        if current.assignee_id == getattr(actor.user, "pk", None):
            return current
        owner = current.assignee.get_username() if current.assignee else "someone else"
        raise StateConflict(f"{owner} has already taken this conversation.", code="already_taken",
                            details={"assignee": owner})
    if current.status == Status.CLOSED:
        raise StateConflict("This conversation is closed.", details={"status": current.status})
    return _status_change(current, actor=actor, reason="Taken over by a person", status=Status.HUMAN,
                          event=HandoffEvent.Kind.CLAIMED, extra={"assignee": actor.user})


@transaction.atomic
def handoff_take_over(*, session: SessionContext, actor: Actor, expected_owner: str | None = None) -> SessionContext:
    """An editor takes a conversation another person owns (they left, say); the feed and timeline say from whom.

    With `expected_owner` (the person the editor confirmed taking it from), a conversation that has changed hands
    since is refused (409 owner_changed) rather than taken from someone else."""
    if actor.user is None or not actor.user.has_perm("contexts.edit_context"):
        raise ApplicationError("Only an editor can take a conversation over from someone else.",
                               code="forbidden", status=403)
    current = session_locked(session)
    if expected_owner is not None:
        owner = _username(current.assignee) if current.status == Status.HUMAN else None
        if owner != expected_owner:
            now = f"{owner} owns it now" if owner else "nobody owns it now"
            raise StateConflict(f"This conversation changed hands: {now}, not {expected_owner}. Look again before "
                                "taking it over.", code="owner_changed", details={"assignee": owner})
    if current.status != Status.HUMAN or current.assignee_id == actor.user.pk:
        return handoff_claim(session=current, actor=actor)
    previous = _username(current.assignee) or "someone else"
    return _status_change(current, actor=actor, reason=f"Taken over from {previous}", status=Status.HUMAN,
                          event=HandoffEvent.Kind.CLAIMED, extra={"assignee": actor.user},
                          feed=Event.Type.HANDOFF_TAKEN_OVER, feed_data={"previous_assignee": previous})


@transaction.atomic
def handoff_reply(*, session: SessionContext, content: str, actor: Actor) -> Message:
    """The owner's answer to the customer: a message of the conversation (role assistant, the person as its
    author) that the agent learns of from the feed and delivers."""
    content = content.strip() if isinstance(content, str) else ""
    if not content:
        raise InvalidInput("A reply cannot be empty.", details={"fields": {"content": "This field is required."}})
    current = session_locked(session)
    if current.status != Status.HUMAN:
        raise StateConflict("Take the conversation before answering the customer.", code="not_taken",
                            details={"status": current.status})
    _owner_only(current, actor, "answer the customer")
    stored = messages_append(session=current, messages=[{"role": Message.Role.ASSISTANT, "content": content}],
                             author=actor.user).stored[0]
    event_record(session=current, type=Event.Type.STAFF_REPLY,
                 data={"seq": stored.seq, "role": stored.role, "content": stored.content,
                       "author": _username(actor.user), "created_at": stored.created_at.isoformat()})
    return stored


@transaction.atomic
def handoff_add_note(*, session: SessionContext, note: str, actor: Actor) -> HandoffEvent:
    """An internal note on the conversation, for staff only (not in the snapshot)."""
    if not isinstance(note, str) or not note.strip():
        raise InvalidInput("A note cannot be empty.", details={"fields": {"note": "This field is required."}})
    if len(note.strip()) > NOTE_MAX_CHARS:
        raise InvalidInput(f"A note is at most {NOTE_MAX_CHARS} characters.",
                           details={"fields": {"note": f"At most {NOTE_MAX_CHARS} characters."}})
    return _event(session_locked(session), HandoffEvent.Kind.NOTE, actor, note.strip())


def _handled_by(actor: Actor) -> str:
    who = actor.user.get_username() if actor.user else actor.label
    return f"Handled by {who} ({timezone.now():%Y-%m-%d %H:%M} UTC)"


def handoff_note_room(actor: Actor) -> int:
    """How long a hand-back note by `actor` may be: the snapshot's handoff note also says who handled it and when."""
    return text_limit("handoff_note") - len(_handled_by(actor)) - len(": ")


@transaction.atomic
def handoff_release(*, session: SessionContext, note: str, actor: Actor) -> SessionContext:
    """Hand the conversation back to the agent, with a note in the snapshot saying what was done."""
    current = session_locked(session)
    if current.status != Status.HUMAN:
        raise StateConflict("Only a conversation a person has taken can be handed back.",
                            details={"status": current.status})
    _owner_only(current, actor, "hand it back")
    note = (note or "").strip()
    handoff_note = _handled_by(actor) + (f": {note}" if note else "")
    if len(note) > (room := handoff_note_room(actor)):
        # Cut, the end of what the person wrote would never reach the agent.
        raise InvalidInput(f"The note has {len(note)} characters; with who handled it and when in front, at most "
                           f"{room} fit.", details={"fields": {"note": f"At most {room} characters."}})
    released = _status_change(current, actor=actor, reason=note or "Handed back to the agent",
                              status=Status.ACTIVE, event=HandoffEvent.Kind.RELEASED,
                              values={"handoff_note": handoff_note},
                              extra={"assignee": None, "handoff_reason": "", "handoff_requested_at": None},
                              feed_data={"note": note, "handoff_note": handoff_note})
    if released.has_unseen_messages and settings.SESSIONCTX_AUTO_UPDATE:
        # What was said while the person had it (their replies included) goes into the context now.
        extraction_request(session=released, trigger="handback")
    return released


@transaction.atomic
def handoffs_of_deleted_user(*, user) -> int:
    """Before a person's account is deleted: the conversations they own go back to the staff queue (else they would
    stay with nobody, refusing the agent's request for a person and every update, until an editor noticed); answers
    how many. Each keeps its place in the queue (when it was first asked for)."""
    actor = Actor.system("account deletion")
    name = user.get_username()
    requeued = 0
    for session in SessionContext.objects.filter(assignee=user, status=Status.HUMAN):
        current = session_locked(session)
        if current.status != Status.HUMAN or current.assignee_id != user.pk:
            continue  # handed back or taken over meanwhile
        _status_change(current, actor=actor, reason=f"Back in the queue: {name}, who had it, no longer has an account",
                       status=Status.HANDOFF_REQUESTED, event=HandoffEvent.Kind.REQUESTED,
                       extra={"assignee": None, "handoff_requested_at": current.handoff_requested_at or timezone.now()},
                       feed_data={"previous_assignee": name})
        requeued += 1
    return requeued


@transaction.atomic
def session_close(*, session: SessionContext, actor: Actor, note: str = "") -> SessionContext:
    """Close the conversation; closing a closed one changes nothing (with a note: 409, the note would be lost)."""
    current = session_locked(session)
    if current.status == Status.CLOSED:
        if note.strip():
            raise StateConflict("This conversation is already closed (someone closed it meanwhile): your note was "
                                "not added. Nothing was changed.", details={"status": current.status})
        return current
    _owner_only(current, actor, "close it")
    return _status_change(current, actor=actor, reason=(note or "Closed").strip(), status=Status.CLOSED,
                          event=HandoffEvent.Kind.CLOSED, extra={"assignee": None, "handoff_requested_at": None})
