"""A person takes a conversation over from the agent and hands it back: each status change is a snapshot
change (a new version and revision, through snapshot_write) plus a handoff event."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..exceptions import InvalidInput, StateConflict
from ..models import HandoffEvent, Revision, SessionContext, Status
from ..snapshot import NOTE_MAX_CHARS, validate_reason
from .actors import Actor
from .snapshots import session_locked, snapshot_write


def _event(session: SessionContext, kind: str, actor: Actor, note: str = "") -> HandoffEvent:
    return HandoffEvent.objects.create(session_id=session.pk, kind=kind, actor=actor.label, actor_user=actor.user,
                                       note=note)


def _status_change(current: SessionContext, *, actor: Actor, reason: str, status: str, event: str,
                   values: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> SessionContext:
    session = snapshot_write(current, values={**(values or {}), "status": status}, source=Revision.Source.HANDOFF,
                             actor=actor, reason=reason, extra=extra)
    _event(session, event, actor, reason)
    return session


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
def handoff_add_note(*, session: SessionContext, note: str, actor: Actor) -> HandoffEvent:
    """An internal note on the conversation, for staff only (not in the snapshot)."""
    if not isinstance(note, str) or not note.strip():
        raise InvalidInput("A note cannot be empty.", details={"fields": {"note": "This field is required."}})
    if len(note.strip()) > NOTE_MAX_CHARS:
        raise InvalidInput(f"A note is at most {NOTE_MAX_CHARS} characters.",
                           details={"fields": {"note": f"At most {NOTE_MAX_CHARS} characters."}})
    return _event(session_locked(session), HandoffEvent.Kind.NOTE, actor, note.strip())


@transaction.atomic
def handoff_release(*, session: SessionContext, note: str, actor: Actor) -> SessionContext:
    """Hand the conversation back to the agent, with a note in the snapshot saying what was done."""
    current = session_locked(session)
    if current.status != Status.HUMAN:
        raise StateConflict("Only a conversation a person has taken can be handed back.",
                            details={"status": current.status})
    note = (note or "").strip()
    who = actor.user.get_username() if actor.user else actor.label
    handoff_note = f"Handled by {who} ({timezone.now():%Y-%m-%d %H:%M} UTC)" + (f": {note}" if note else "")
    return _status_change(current, actor=actor, reason=note or "Handed back to the agent", status=Status.ACTIVE,
                          event=HandoffEvent.Kind.RELEASED,
                          values={"handoff_note": handoff_note[: settings.SESSIONCTX_MAX_GOAL_CHARS]},
                          extra={"assignee": None, "handoff_reason": "", "handoff_requested_at": None})


@transaction.atomic
def session_close(*, session: SessionContext, actor: Actor, note: str = "") -> SessionContext:
    """Close the conversation; closing a closed one changes nothing."""
    current = session_locked(session)
    if current.status == Status.CLOSED:
        return current
    return _status_change(current, actor=actor, reason=(note or "Closed").strip(), status=Status.CLOSED,
                          event=HandoffEvent.Kind.CLOSED, extra={"assignee": None, "handoff_requested_at": None})
