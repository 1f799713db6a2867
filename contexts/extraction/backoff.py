"""Per-session back-off after failed runs (#18): a session whose model keeps failing stops sending it every unseen
message on every turn. After SESSIONCTX_BACKOFF_AFTER_FAILURES failed runs in a row its automatic updates wait
SESSIONCTX_BACKOFF_BASE × 2^(failures − N) seconds after the last failure, at most SESSIONCTX_BACKOFF_MAX; the
periodic sweep (policy.idle_sweep) asks for the next update once the wait is over.

Derived from the session's latest runs (no column of its own): only runs that asked the model count. A failure
extends the streak; a success or a `no_change` ends it; skipped, superseded and budget_exceeded runs do neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ..models import ExtractionRun

# Runs that asked the model: they make or break a streak of failures.
DECISIVE = (ExtractionRun.Status.SUCCEEDED, ExtractionRun.Status.FAILED, ExtractionRun.Status.NO_CHANGE)
# Asked for by an operator (a command, the evaluation harness), who wants to know now whether the model works.
OPERATOR_TRIGGERS = frozenset({"command", "reextract", "eval"})
# How a run skipped for the back-off starts its error (docs/api.md): agents may look for it.
SKIP_PREFIX = "Backing off"


@dataclass(frozen=True)
class Backoff:
    failed: int  # failed runs in a row
    last_failure: datetime
    until: datetime

    @property
    def seconds(self) -> int:
        return round((self.until - self.last_failure).total_seconds())

    def describe(self) -> str:
        return (f"the last {self.failed} runs failed in a row, so automatic updates of this session wait until "
                f"{self.until:%Y-%m-%d %H:%M:%S} UTC ({self.seconds} s after the last failure, doubling with each "
                "further one). The messages stay unseen; the periodic sweep asks for an update then")


def backoff_of(session_pk: int) -> Backoff | None:
    """The session's back-off as its latest runs imply (it may be over already), or None under the threshold."""
    after = int(settings.SESSIONCTX_BACKOFF_AFTER_FAILURES)
    if after <= 0:
        return None
    base, cap = float(settings.SESSIONCTX_BACKOFF_BASE), float(settings.SESSIONCTX_BACKOFF_MAX)
    # Failures past the one that reached the cap do not lengthen the wait: no need to read further back.
    depth = after + math.ceil(math.log2(cap / base)) + 1
    rows = list(ExtractionRun.objects.filter(session_id=session_pk, status__in=DECISIVE)
                .order_by("-created_at").values_list("status", "finished_at")[:depth])
    failed = next((i for i, (status, _) in enumerate(rows) if status != ExtractionRun.Status.FAILED), len(rows))
    last_failure = rows[0][1] if rows else None
    if failed < after or last_failure is None:
        return None
    delay = min(base * 2 ** (failed - after), cap)
    return Backoff(failed, last_failure, last_failure + timedelta(seconds=delay))


def backing_off(session_pk: int, *, trigger: str = "", now: datetime | None = None) -> Backoff | None:
    """The back-off that holds a run of this trigger now, if any (an operator's run is never held)."""
    if trigger in OPERATOR_TRIGGERS:
        return None
    found = backoff_of(session_pk)
    return found if found is not None and found.until > (now or timezone.now()) else None


def skip_reason(held: Backoff) -> str:
    return f"{SKIP_PREFIX}: not run, as {held.describe()} (or `manage.py update_context` runs one now)."
