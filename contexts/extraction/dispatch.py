"""Getting runs to the workers: sent by task name through the Celery app once the transaction commits; a run the
broker refused (or lost with a killed worker) is found and sent again by the periodic sweep."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..infra.inprocess import run_in_background
from ..models import ExtractionRun
from .leases import extraction_lease, lock_key, sessions_with_live_attempts, use_liveness_locks

logger = logging.getLogger(__name__)

EXTRACT_TASK = "contexts.extract_context"
UNSENT_NOTE = "Not sent to the workers yet"
# Publishing gives up fast when the broker is down: the run stays queued with a note, and the web request that
# asked for it does not hang.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# A live worker claims a run a moment after it gets its task (it takes a task only when it has a free process),
# unless the claim waits for the session's row: a run still queued this long after that lost the worker.
RECEIVED_GRACE = 10


def send_on_commit(run_id: Any) -> None:
    """Send the run to the workers once the current transaction commits (at once outside one)."""
    run_id = str(run_id)
    transaction.on_commit(lambda: send(run_id))


def send(run_id: str) -> bool:
    """Publish one run; False (and the run marked unsent) when the broker refused it."""
    if current_app.conf.task_always_eager:
        # The embedded default (no broker): a thread of this process runs it, so the request that queued it
        # answers at once instead of waiting for the model.
        run_in_background(_run_here, run_id)
        return True
    try:
        current_app.tasks[EXTRACT_TASK].apply_async(args=[run_id], queue=settings.CELERY_TASK_DEFAULT_QUEUE,
                                                    retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as exc:  # noqa: BLE001 - kombu raises several types for an unreachable broker
        logger.warning("run %s not sent, broker unavailable: %s", run_id, exc)
        mark_unsent(run_id=run_id, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


def _run_here(run_id: str) -> None:
    # Through the app's registry, as a worker would run it (the task's own rules, eagerly).
    current_app.tasks[EXTRACT_TASK].apply(args=[run_id])


def mark_unsent(*, run_id: str, error: str) -> None:
    """The broker refused the run: it stays queued, saying so, until something sends it again."""
    note = (f"{UNSENT_NOTE} (broker unavailable: {error[:300]}). It is sent again by the next update request, "
            "the periodic sweep, a worker starting, or `manage.py update_context --pending`.")
    ExtractionRun.objects.filter(pk=run_id, status=ExtractionRun.Status.QUEUED).update(enqueued_at=None, error=note)
    # A running run whose worker died is sent again by the next sweep, not after SESSIONCTX_EXTRACTION_RESEND_AFTER.
    ExtractionRun.objects.filter(pk=run_id, status=ExtractionRun.Status.RUNNING).update(enqueued_at=None)


def mark_sent(run_pk: Any) -> None:
    """A queued run is being sent now (so the sweep leaves it alone until SESSIONCTX_EXTRACTION_RESEND_AFTER)."""
    ExtractionRun.objects.filter(pk=run_pk).update(enqueued_at=timezone.now())
    send_on_commit(run_pk)


def pending(*, older_than: float | None = None) -> list[str]:
    """Ids of runs that need sending again, marked as sent now: the caller sends them, and marks a refused one
    unsent. That is a queued run not sent, or not recently, or received by a worker that never claimed it (that
    worker died with the task); a running run past its lease, or whose worker is gone, unless it was sent again
    since its attempt started (once is enough until SESSIONCTX_EXTRACTION_RESEND_AFTER, even if it waits behind
    other tasks in the broker)."""
    now = timezone.now()
    resend_after = now - timedelta(
        seconds=settings.SESSIONCTX_EXTRACTION_RESEND_AFTER if older_than is None else older_than)
    received = now - timedelta(seconds=RECEIVED_GRACE if older_than is None else min(older_than, RECEIVED_GRACE))
    queued = Q(status=ExtractionRun.Status.QUEUED) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=resend_after)
        | Q(received_at__gte=F("enqueued_at"), received_at__lte=received))
    running = Q(status=ExtractionRun.Status.RUNNING) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=F("started_at")) | Q(enqueued_at__lte=resend_after))
    lease_start = now - extraction_lease()
    if not use_liveness_locks():
        abandoned = running & Q(started_at__lte=lease_start)
        ids = list(ExtractionRun.objects.filter(queued | abandoned).order_by("created_at").values_list("id", flat=True))
    else:
        # A running run whose session lock nobody holds lost its worker: resent now, not after its lease.
        # The runs are read before the locks: a run seen running had its lock taken before that commit.
        rows = list(ExtractionRun.objects.filter(queued | running)
                    .order_by("created_at").values_list("id", "status", "session_id", "started_at"))
        any_running = any(status == ExtractionRun.Status.RUNNING for _, status, _, _ in rows)
        live = sessions_with_live_attempts() if any_running else set()
        ids = [pk for pk, status, session_pk, started_at in rows
               if status != ExtractionRun.Status.RUNNING or started_at is None or started_at <= lease_start
               or lock_key(session_pk)[1] not in live]
    ExtractionRun.objects.filter(pk__in=ids, status=ExtractionRun.Status.QUEUED).update(enqueued_at=now, error="")
    ExtractionRun.objects.filter(pk__in=ids, status=ExtractionRun.Status.RUNNING).update(enqueued_at=now)
    return [str(pk) for pk in ids]


def send_pending(*, older_than: float | None = None) -> tuple[int, int]:
    """Send again every run that is stuck queued or abandoned; (sent, not sent)."""
    results = [send(run_id) for run_id in pending(older_than=older_than)]
    return results.count(True), results.count(False)
