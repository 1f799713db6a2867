"""Asking for a model-driven update of a snapshot."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..exceptions import NotFound
from ..infra.requestid import current_request_id
from ..models import ExtractionRun, SessionContext
from .backoff import backing_off, skip_reason
from .dispatch import send_on_commit


@transaction.atomic
def extraction_request(*, session: SessionContext, trigger: str) -> ExtractionRun:
    """Queue a model-driven update of the snapshot; it is sent to the workers when the transaction commits.

    Requests that pile up while one is queued collapse into it: the run takes every message that is unseen
    when it starts. A queued run the broker never took (or that sat too long) is sent again. While the session
    backs off after failed runs (backoff.py), the request ends at once as a skipped run that says until when.
    """
    # The session's row lock: two requests at once find or create one queued run between them.
    if not SessionContext.objects.select_for_update().filter(pk=session.pk).exists():
        # Erased since the caller read it: a run for it would fail its foreign key at commit (a 500).
        raise NotFound(f"Session {session.session_id!r} does not exist.", details={"session_id": session.session_id})
    held = backing_off(session.pk, trigger=trigger)
    if held is not None:
        now = timezone.now()
        return ExtractionRun.objects.create(session_id=session.pk, trigger=trigger, status=ExtractionRun.Status.SKIPPED,
                                            started_at=now, finished_at=now, error=skip_reason(held),
                                            request_id=current_request_id())
    pending = (ExtractionRun.objects.filter(session_id=session.pk, status=ExtractionRun.Status.QUEUED)
               .order_by("created_at").first())
    now = timezone.now()
    if pending is None:
        # Marked as sent now; the send on commit clears the mark if the broker refuses it.
        run = ExtractionRun.objects.create(session_id=session.pk, trigger=trigger, enqueued_at=now,
                                           request_id=current_request_id())
    else:
        if pending.enqueued_at is not None and pending.enqueued_at > now - timedelta(
                seconds=settings.SESSIONCTX_EXTRACTION_RESEND_AFTER):
            return pending
        run = pending
        run.enqueued_at = now
        run.save(update_fields=["enqueued_at"])
    send_on_commit(run.pk)
    return run
