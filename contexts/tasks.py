"""Celery tasks: ids in, the job engine (contexts.extraction) called; nothing else."""

from __future__ import annotations

import gc
import logging

from celery import shared_task
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready
from django.conf import settings
from django.db import close_old_connections

from .extraction.apply import extraction_run
from .extraction.claim import Decision
from .extraction.dispatch import EXTRACT_TASK, send_pending
from .extraction.policy import idle_sweep
from .services.events import events_purge
from .services.governance import sessions_purge_by_setting
from .services.webhooks import DELIVER_TASK, webhook_delivery_run, webhooks_sweep

logger = logging.getLogger(__name__)

# A task requeued the moment its pool process died can be claimed before PostgreSQL has noticed the closed
# connection and dropped that attempt's lock: the first look again comes this soon, later ones after the lease.
LOCK_RECHECK_SECONDS = 3.0


@shared_task(
    name=EXTRACT_TASK,
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
    claim = extraction_run(run_id=run_id)
    if claim.decision == Decision.LATER and not self.request.is_eager:
        countdown = claim.retry_in
        if claim.lock_held and not self.request.retries:
            countdown = min(countdown, LOCK_RECHECK_SECONDS)
        raise self.retry(countdown=countdown)
    return str(claim.decision)


@shared_task(name="contexts.sweep_extractions", ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep_extractions() -> int:
    """Periodic (celery beat) and at worker start: send runs that were never sent or were abandoned."""
    sent, failed = send_pending()
    if sent or failed:
        logger.info("sweep: %d runs sent again, %d could not be sent", sent, failed)
    return sent


@shared_task(name="contexts.sweep_idle_updates", ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep_idle_updates() -> int:
    """Periodic (celery beat): queue the update of sessions under an idle:S policy that have gone quiet."""
    queued = idle_sweep()
    if queued:
        logger.info("idle sweep: %d updates queued", queued)
    return queued


@shared_task(name="contexts.purge_events", ignore_result=True, soft_time_limit=300, time_limit=360)
def purge_events() -> int:
    """Periodic (celery beat): drop feed events past their retention."""
    return events_purge()


@shared_task(name="contexts.purge_sessions", ignore_result=True, soft_time_limit=3000, time_limit=3300)
def purge_sessions() -> int:
    """Periodic (celery beat): delete sessions untouched for SESSIONCTX_RETENTION_DAYS (off when 0)."""
    return sessions_purge_by_setting()["sessions"]


@shared_task(name=DELIVER_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             # Above two attempt timeouts (connect and read); a lost attempt is the sweep's after its lease.
             soft_time_limit=settings.SESSIONCTX_WEBHOOK_TIMEOUT * 2 + 10,
             time_limit=settings.SESSIONCTX_WEBHOOK_TIMEOUT * 2 + 20)
def deliver_webhook(delivery_id: int) -> str:
    """One attempt at one webhook delivery; a repeated or late task for it does nothing (the row is claimed)."""
    return webhook_delivery_run(delivery_id=delivery_id)


@shared_task(name="contexts.sweep_webhooks", ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep_webhooks() -> int:
    """Periodic (celery beat): send webhook deliveries that are due and not on their way."""
    return webhooks_sweep()


def _in_worker(sender) -> bool:
    return sender is not None and not getattr(sender.request, "is_eager", False)


@task_prerun.connect
@task_postrun.connect
def _database_hygiene(sender=None, **kwargs) -> None:
    # Connections outlive tasks (CELERY_DB_REUSE_MAX): drop the broken or expired ones as Django does around each
    # request (CONN_MAX_AGE, CONN_HEALTH_CHECKS), so a task never starts on a connection a restart killed.
    if _in_worker(sender):
        close_old_connections()


@worker_process_init.connect
def _warm_up(**kwargs) -> None:
    # The openai package imports its resources lazily (about a second): pay that before the first task.
    from .extraction import llm

    if llm.is_configured():
        llm.client().chat.completions  # noqa: B018 - the attribute access triggers the imports
    # What the worker has built by now lives as long as the process; frozen, a full collection does not walk it
    # again and stop every task of a threads-pool worker meanwhile.
    gc.collect()
    gc.freeze()


@worker_ready.connect
def _sweep_on_start(sender=None, **kwargs) -> None:
    _warm_up()
    # Runs queued while no worker (or no broker) was up get going as soon as a worker is.
    try:
        sweep_extractions.apply_async(queue=settings.CELERY_TASK_DEFAULT_QUEUE)
        sweep_webhooks.apply_async(queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    except Exception:  # noqa: BLE001
        logger.exception("startup sweep not sent")
