"""Celery tasks. Tasks take ids and call services."""

from __future__ import annotations

import gc
import logging

from celery import shared_task
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready
from django.conf import settings
from django.db import close_old_connections

from . import services
from .dbhealth import health_check_by_socket, note_connections_used

logger = logging.getLogger(__name__)

# Publishing gives up fast when the broker is down: the run stays queued with a note, and the web
# request that asked for it does not hang.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# A task requeued the moment its pool process died can be claimed before PostgreSQL has noticed the closed
# connection and dropped that attempt's lock: the first look again comes this soon, later ones after the lease.
LOCK_RECHECK_SECONDS = 3.0


def enqueue_extraction(run_id: str) -> bool:
    """Send a queued run to the workers (called on commit); False when the broker refused it."""
    try:
        extract_context.apply_async(args=[run_id], queue=settings.CELERY_TASK_DEFAULT_QUEUE, retry=True,
                                    retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as exc:  # noqa: BLE001 - kombu raises several types for an unreachable broker
        logger.warning("run %s not sent, broker unavailable: %s", run_id, exc)
        services.extraction_mark_unsent(run_id=run_id, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


def send_pending(*, older_than: float | None = None) -> tuple[int, int]:
    """Send again every run that is stuck queued or abandoned; (sent, not sent)."""
    sent = failed = 0
    for run_id in services.extraction_pending(older_than=older_than):
        if enqueue_extraction(run_id):
            sent += 1
        else:
            failed += 1
    return sent, failed


@shared_task(
    name="contexts.extract_context",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # Above the model client's worst case; the extractor stops starting calls before the soft limit.
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    # Retries here only look again at another attempt that seemed alive (once soon, then after its lease);
    # the attempt bound lives in the database.
    max_retries=settings.SESSIONCTX_EXTRACTION_MAX_ATTEMPTS,
)
def extract_context(self, run_id: str) -> str:
    """Run one extraction; a redelivered or repeated run id applies its work at most once."""
    claim = services.extraction_run(run_id=run_id)
    if claim.decision == "later" and not self.request.is_eager:
        countdown = claim.retry_in
        if claim.lock_held and not self.request.retries:
            countdown = min(countdown, LOCK_RECHECK_SECONDS)
        raise self.retry(countdown=countdown)
    return claim.decision


@shared_task(name="contexts.sweep_extractions", ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep_extractions() -> int:
    """Periodic (celery beat) and at worker start: send runs that were never sent or were abandoned."""
    sent, failed = send_pending()
    if sent or failed:
        logger.info("sweep: %d runs sent again, %d could not be sent", sent, failed)
    return sent


def _in_worker(sender) -> bool:
    return sender is not None and not getattr(sender.request, "is_eager", False)


@task_prerun.connect
def _database_check(sender=None, **kwargs) -> None:
    # Connections outlive tasks (CELERY_DB_REUSE_MAX): drop the broken or expired ones, as Django does
    # around each request, so a task never starts on a connection that a database restart killed. One used
    # within the last second is checked by its socket instead of a `SELECT 1`, as requests are (dbhealth).
    if _in_worker(sender):
        close_old_connections()
        health_check_by_socket()


@task_postrun.connect
def _database_release(sender=None, **kwargs) -> None:
    if _in_worker(sender):
        close_old_connections()
        note_connections_used()


@worker_process_init.connect
def _warm_up(**kwargs) -> None:
    # The openai package imports its resources lazily (about a second): pay that before the first task.
    from .extractors import get_extractor

    if get_extractor().name == "openai":
        from . import llm

        llm.client().chat.completions  # noqa: B018 - the attribute access triggers the imports
    # What the worker has built by now (modules, classes, settings, the model client) lives as long as the process.
    # Left to the collector, it is walked again at every full collection, which stops every task of a threads-pool
    # worker for 100-150 ms (timed with gc.callbacks in the throughput bench's workers); frozen, about 6 ms.
    gc.collect()
    gc.freeze()


@worker_ready.connect
def _sweep_on_start(sender=None, **kwargs) -> None:
    _warm_up()
    # Runs queued while no worker (or no broker) was up get going as soon as a worker is.
    try:
        sweep_extractions.apply_async(queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    except Exception:  # noqa: BLE001
        logger.exception("startup sweep not sent")
