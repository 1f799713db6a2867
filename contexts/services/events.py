"""The event feed: what agents and webhooks learn of. Every event is written in the transaction of the change it
reports, so a change and its event commit together or not at all."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..models import Event, SessionContext
from .webhooks import deliveries_create

# Any constant: the key of the PostgreSQL advisory lock that orders event ids.
_EVENT_ORDER_LOCK = 0x5C7E7E


def event_record(*, session: SessionContext, type: str, data: dict[str, Any]) -> Event:
    """Append an event to the feed, in the caller's transaction.

    A reader pages with `after=<last id seen>`, so ids must become visible in increasing order: on PostgreSQL
    a transaction-level advisory lock, taken just before the id is drawn and held until commit, makes the
    transactions that write events commit in id order (SQLite serialises all writers anyway). A transaction
    that changes several sessions takes the lock first (`event_order_lock`), before any row lock."""
    with transaction.atomic(savepoint=False):
        event_order_lock()
        event = Event.objects.create(project_id=session.project_id, session_id=session.pk, type=type, data=data)
        # In the same transaction, so no committed event misses a webhook; they are sent once it commits.
        deliveries_create(event=event)
        return event


def event_order_lock() -> None:
    """Hold the event order lock until the current transaction ends (PostgreSQL only)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_EVENT_ORDER_LOCK])


def events_purge(*, now=None) -> int:
    """Delete events older than SESSIONCTX_EVENT_RETENTION_DAYS (with their webhook deliveries); returns how many
    events. In batches of SESSIONCTX_DELETE_BATCH_SIZE, each its own transaction: one delete of a backlog (after
    the retention was lowered on a busy deployment) would hold every expired event in memory and in one
    transaction, past the task's time limit, and be rolled back every hour."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.SESSIONCTX_EVENT_RETENTION_DAYS)
    deleted = 0
    while True:
        with transaction.atomic():
            batch = list(Event.objects.filter(created_at__lt=cutoff).order_by("id")
                         .values_list("id", flat=True)[:settings.SESSIONCTX_DELETE_BATCH_SIZE])
            if not batch:
                return deleted
            Event.objects.filter(pk__in=batch).delete()
            deleted += len(batch)
