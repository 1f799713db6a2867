"""The event feed, read in id order from a cursor."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from ..models import Event, Project


def events_after(*, project: Project | int, after: int, session_id: str | None = None, types: Iterable[str] = (),
                 limit: int = 100) -> list[Event]:
    """Up to `limit` of the project's events with an id above `after`, oldest first (one more tells the caller
    there are more)."""
    events: QuerySet[Event] = (Event.objects.filter(project=project, id__gt=after).select_related("session")
                               .order_by("id"))
    if session_id:
        events = events.filter(session__session_id=session_id)
    types = list(types)
    if types:
        events = events.filter(type__in=types)
    return list(events[:limit])


def events_for(session_id: int, *, after: int = 0) -> QuerySet[Event]:
    """A session's events (by its primary key), oldest first."""
    return Event.objects.filter(session_id=session_id, id__gt=after).order_by("id")


def event_latest_id(*, project: Project | int | None = None) -> int:
    """The newest event id (of the project, if given), 0 if none."""
    events = Event.objects.all() if project is None else Event.objects.filter(project=project)
    return events.order_by("-id").values_list("id", flat=True).first() or 0
