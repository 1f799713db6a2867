"""Reads shared by the API, the staff pages and the tasks."""

from __future__ import annotations

from django.db.models import QuerySet

from .exceptions import NotFound
from .models import ExtractionRun, HandoffEvent, Message, Revision, SessionContext


def session_get(session_id: str) -> SessionContext:
    session = SessionContext.objects.filter(session_id=session_id).first()
    if session is None:
        raise NotFound(f"Session {session_id!r} does not exist.", details={"session_id": session_id})
    return session


def session_list(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    mode: str | None = None,
    updated_after=None,
) -> QuerySet[SessionContext]:
    """Sessions, newest first, filtered on the indexed columns."""
    qs = SessionContext.objects.all()
    if user_id:
        qs = qs.filter(user_id=user_id)
    if agent_id:
        qs = qs.filter(agent_id=agent_id)
    if status:
        qs = qs.filter(status=status)
    if mode:
        qs = qs.filter(mode=mode)
    if updated_after is not None:
        qs = qs.filter(updated_at__gt=updated_after)
    return qs.order_by("-updated_at", "-id")


def revisions_for(session: SessionContext) -> QuerySet[Revision]:
    return Revision.objects.filter(session=session).order_by("-version")


def messages_for(session: SessionContext, *, after_seq: int = 0) -> QuerySet[Message]:
    return Message.objects.filter(session=session, seq__gt=after_seq).order_by("seq")


def unseen_messages(session: SessionContext) -> QuerySet[Message]:
    """Messages no extraction has consumed yet."""
    return messages_for(session, after_seq=session.cursor_seq)


def runs_for(session: SessionContext) -> QuerySet[ExtractionRun]:
    return ExtractionRun.objects.filter(session=session).order_by("-created_at")


def handoff_events_for(session: SessionContext) -> QuerySet[HandoffEvent]:
    return HandoffEvent.objects.filter(session=session).select_related("actor_user").order_by("created_at", "id")


def handoff_queue() -> QuerySet[SessionContext]:
    """Sessions waiting for a person, oldest request first."""
    return SessionContext.objects.filter(status="handoff_requested").order_by("handoff_requested_at", "id")
