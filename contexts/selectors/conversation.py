"""Reads of what happened in a conversation: its messages, its context updates, its handoff events."""

from __future__ import annotations

from django.db.models import QuerySet

from ..exceptions import NotFound
from ..models import ExtractionRun, HandoffEvent, Message, SessionContext


def messages_for(session: SessionContext, *, after_seq: int = 0) -> QuerySet[Message]:
    return Message.objects.filter(session=session, seq__gt=after_seq).order_by("seq")


def unseen_messages(session: SessionContext) -> QuerySet[Message]:
    """Messages no extraction has consumed yet."""
    return messages_for(session, after_seq=session.cursor_seq)


def runs_for(session: SessionContext) -> QuerySet[ExtractionRun]:
    return ExtractionRun.objects.filter(session=session).order_by("-created_at")


def run_get(run_id, *, project) -> ExtractionRun:
    """A run of the project's sessions; another project's run is not found (404, not 403: ids are not probed)."""
    run = ExtractionRun.objects.select_related("session").filter(pk=run_id, session__project=project).first()
    if run is None:
        raise NotFound(f"Run {str(run_id)!r} does not exist.", details={"run_id": str(run_id)})
    return run


def handoff_events_for(session: SessionContext, *, limit: int = 200) -> list[HandoffEvent]:
    """The newest `limit` staff-timeline entries, oldest first (a long-lived conversation's newest note shows)."""
    events = HandoffEvent.objects.filter(session=session).select_related("actor_user").order_by("-created_at", "-id")
    return list(events[:limit])[::-1]


def recent_messages(session: SessionContext, *, limit: int = 200, before_seq: int | None = None,
                    from_seq: int | None = None) -> list[Message]:
    """The last `limit` messages (before message `before_seq`, from message `from_seq`, if given) in order."""
    messages = Message.objects.filter(session=session).select_related("author")
    if before_seq is not None:
        messages = messages.filter(seq__lt=before_seq)
    if from_seq is not None:
        messages = messages.filter(seq__gte=from_seq)
    return list(messages.order_by("-seq")[:limit])[::-1]


def handoff_latest_event_id(session: SessionContext) -> int:
    """The newest staff-timeline entry's id (0 if none): notes change no session row, so the live page checks it."""
    return HandoffEvent.objects.filter(session=session).order_by("-id").values_list("id", flat=True).first() or 0
