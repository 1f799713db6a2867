"""A worker taking a run: at most one attempt on a session at a time, redeliveries applied once, dead workers'
runs taken over.

The model call happens outside any transaction (SQLite would hold its write lock through it); what makes that
safe is
  1. the claim: under the session's row lock, at most one run of a session is running, and each claim bumps
     `attempts`, which fences out an older attempt of the same run that is still alive;
  2. the apply (apply.py): under the row lock again, the snapshot is written only if its version and cursor
     are still the ones the extraction started from, in one transaction with the revision, the cursor and the
     run record.
A claim must tell a live earlier attempt (leave it be) from a dead one (take its run over). The lease (the
hard time limit, plus a margin) is the bound that holds everywhere; on PostgreSQL an attempt also holds a
session-level advisory lock keyed on its session, on its own connection, from its claim until it records how
it ended. A worker that dies (SIGKILL, OOM killer) closes that connection and PostgreSQL drops the lock with
it, so a claim that gets the lock knows no attempt on the session is alive and takes over at once. The lock is
taken and given back only under the session's row lock (given back before the commit that ends the attempt),
so a claim that finds it held is looking at a live attempt, never a finished one.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ..models import ExtractionRun, SessionContext
from .dispatch import mark_sent
from .leases import extraction_lease, lock_key, use_liveness_locks

logger = logging.getLogger(__name__)

FINISHED = (ExtractionRun.Status.SUCCEEDED, ExtractionRun.Status.FAILED, ExtractionRun.Status.SKIPPED,
            ExtractionRun.Status.SUPERSEDED, ExtractionRun.Status.NO_CHANGE, ExtractionRun.Status.BUDGET_EXCEEDED)


class Decision(enum.StrEnum):
    GO = "go"  # this attempt runs the extraction
    DONE = "done"  # nothing to do: finished already, or the run or its session is gone
    WAIT = "wait"  # another run of the session is running; it sends this one when it ends
    LATER = "later"  # an earlier attempt of this run may still be alive: look again in `retry_in` seconds


@dataclass
class Claim:
    decision: Decision
    run: ExtractionRun | None = None
    session: SessionContext | None = None  # with GO: the row as read under the claim's lock
    retry_in: float = 0.0
    lock_key: tuple[int, int] | None = None  # the session's attempt lock, while this attempt holds it
    lock_held: bool = False  # with LATER: the attempt lock said the earlier attempt is alive

    def release(self) -> None:
        """Give the attempt lock back; called under the session's row lock, before the attempt's last commit."""
        if self.lock_key is None:
            return
        key, self.lock_key = self.lock_key, None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
            if not cursor.fetchone()[0]:
                # The connection was replaced during the attempt (the database restarted): nothing to give back.
                logger.warning("attempt lock %s was not held by this connection any more", key)


def finish(run: ExtractionRun, status: str, *, attempt: int | None = None, **values: Any) -> bool:
    """Record how a run ended; with `attempt`, only if that attempt still owns the run (else False)."""
    values = {"status": status, "finished_at": timezone.now(), **values}
    rows = ExtractionRun.objects.filter(pk=run.pk)
    if attempt is not None:
        # The fence: a newer attempt took the run over (this one outlived its lease) and its result counts.
        rows = rows.filter(status=ExtractionRun.Status.RUNNING, attempts=attempt)
    if not rows.update(**values):
        return False
    for name, value in values.items():
        setattr(run, name, value)
    return True


def next_queued(session_pk: int) -> Any:
    """The id of the session's oldest queued run, or None."""
    return (ExtractionRun.objects.filter(session_id=session_pk, status=ExtractionRun.Status.QUEUED)
            .order_by("created_at").values_list("id", flat=True).first())


def claim(run_id: str, *, extractor: str, model: str) -> Claim:
    """Take the run for this attempt, or say why not (Decision)."""
    # Committed before the claim can wait for the session's row: a run still queued a while after a worker got
    # it lost that worker, and the sweep sends it again then rather than after SESSIONCTX_EXTRACTION_RESEND_AFTER.
    ExtractionRun.objects.filter(pk=run_id, status=ExtractionRun.Status.QUEUED).update(received_at=timezone.now())
    with transaction.atomic():
        # The session row lock is the per-session mutex for claims and applies (SQLite: the IMMEDIATE
        # transaction); the extraction builds on the row as read here.
        session = (SessionContext.objects.select_for_update()
                   .filter(pk=Subquery(ExtractionRun.objects.filter(pk=run_id).values("session_id")[:1])).first())
        if session is None:
            return Claim(Decision.DONE)  # the run or its session was deleted meanwhile
        taken = _decide(uuid.UUID(str(run_id)), session, extractor=extractor, model=model)
        if taken.decision != Decision.GO:
            taken.release()
        return taken


def _runs_and_lock(run_pk: Any, session: SessionContext) -> tuple[list[ExtractionRun], tuple | None, bool]:
    """This run and the session's running ones, and whether this attempt got the session's attempt lock."""
    runs = (ExtractionRun.objects.filter(Q(pk=run_pk) | Q(session_id=session.pk, status=ExtractionRun.Status.RUNNING))
            .only("id", "session_id", "status", "attempts", "started_at", "trigger").order_by("created_at"))
    key = lock_key(session.pk) if use_liveness_locks() else None
    if key is not None:
        # Tried in the same statement, once (an uncorrelated sub-select), and only when a row comes back.
        runs = runs.annotate(got_lock=RawSQL("(SELECT pg_try_advisory_lock(%s, %s))", key))
    runs = list(runs)
    return runs, key, bool(runs) and key is not None and runs[0].got_lock


def _decide(run_pk: Any, session: SessionContext, *, extractor: str, model: str) -> Claim:
    """The claim's decision, under the session's row lock."""
    runs, key, got_lock = _runs_and_lock(run_pk, session)
    taken = Claim(Decision.DONE, lock_key=key if got_lock else None)
    run = next((r for r in runs if r.pk == run_pk), None)
    if run is None or run.status in FINISHED:
        return taken  # a redelivery of finished work applies nothing
    taken.run = run
    now = timezone.now()
    lease_start = now - extraction_lease()
    # With the lock, no earlier attempt on this session is alive: whatever runs it left are taken over now.
    # Without it (held elsewhere, or no such locks here), an attempt inside its lease may still be working.
    if not got_lock and run.status == ExtractionRun.Status.RUNNING and run.started_at and run.started_at > lease_start:
        # Look again once its lease is over rather than run the model twice.
        taken.decision, taken.retry_in = Decision.LATER, (run.started_at - lease_start).total_seconds() + 1
        taken.lock_held = key is not None
        return taken
    others = [other for other in runs if other.pk != run.pk]
    if not got_lock and any(other.started_at and other.started_at > lease_start for other in others):
        taken.decision = Decision.WAIT  # that run sends this one when it ends
        # Not a task its worker lost: the sweep leaves it to that run (or to that run's takeover, if it dies).
        ExtractionRun.objects.filter(pk=run.pk).update(received_at=None)
        return taken
    if run.attempts >= settings.SESSIONCTX_EXTRACTION_MAX_ATTEMPTS:
        finish(run, ExtractionRun.Status.FAILED,
               error=f"Gave up after {run.attempts} attempts: each one ended without finishing (worker lost?).")
        _send_next(session.pk)
        return taken
    for other in others:
        # Its worker died; this run takes every unseen message, its own included, so the record says who did.
        finish(other, ExtractionRun.Status.SUPERSEDED, superseded_by_id=run.pk,
               error=f"Its worker stopped before it finished; run {run.pk} took over its messages.")
    run.status, run.attempts, run.started_at = ExtractionRun.Status.RUNNING, run.attempts + 1, now
    run.error, run.extractor, run.model = "", extractor, model[:255]
    run.save(update_fields=["status", "attempts", "started_at", "error", "extractor", "model"])
    taken.decision, taken.session = Decision.GO, session
    return taken


def _send_next(session_pk: int) -> None:
    waiting = next_queued(session_pk)
    if waiting is not None:
        mark_sent(waiting)
