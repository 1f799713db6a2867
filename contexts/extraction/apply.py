"""Doing one run: claim it, ask the extractor outside any transaction, write the result through the one
versioned write (with its revision, the cursor and the run record), or nothing."""

from __future__ import annotations

import enum
import itertools
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..exceptions import InvalidInput
from ..models import ExtractionRun, Message, Revision, SessionContext
from ..selectors.usage import budget_spent, run_cost
from ..services.actors import Actor
from ..services.locks import locks_withhold, proposals_record
from ..services.snapshots import snapshot_write
from ..snapshot import fields_for, validate_snapshot
from . import llm
from .backoff import SKIP_PREFIX, backing_off, skip_reason
from .claim import Claim, Decision, claim, finish, next_queued
from .containment import contain
from .dispatch import mark_sent, send_on_commit
from .extractors.base import Deadline, ExtractionError, Extractor, PromptMessage, Usage, chunk_messages
from .extractors.registry import get_extractor
from .merge import merge

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W\d_]{4,}")
_SMALL_TALK = frozenset({"thanks", "thank", "good", "luck", "great", "sure", "okay", "please", "with", "that",
    "this", "have", "from", "your", "will", "what", "just", "then", "there", "here", "well", "nice", "cool",
    "perfect", "awesome", "welcome", "sounds", "right", "also", "into", "them", "they", "were", "been", "would",
    "could", "should", "about", "next", "know"})
# After a conflict that cannot be merged, wait this long (doubling, up to the ceiling) before recomputing.
RECOMPUTE_WAIT, RECOMPUTE_WAIT_MAX = 0.1, 2.0


class Outcome(enum.Enum):
    APPLIED = "applied"
    CONFLICT = "conflict"  # a field the model changed was changed meanwhile (or the cursor moved): recompute
    STALE = "stale"  # a newer attempt owns the run, or the session is gone: this attempt's work is dropped


@dataclass(frozen=True)
class Base:
    """The snapshot an extraction builds on, and where it stood."""

    version: int
    cursor_seq: int
    mode: str
    previous: dict[str, Any]

    @classmethod
    def of(cls, row: SessionContext) -> Base:
        """Raises if the stored snapshot cannot be read as text and text steps: never update from nothing."""
        previous = row.snapshot()
        for name in ("summary", "goal"):
            if not isinstance(previous[name], str):
                raise TypeError(f"{name} is {type(previous[name]).__name__}, not text")
        for name in ("plan", "progress"):
            if not all(isinstance(step, str) for step in previous[name]):
                raise TypeError(f"{name} holds something other than text steps")
        return cls(row.version, row.cursor_seq, row.mode, previous)


@dataclass
class Attempt:
    """One attempt at a claimed run: what it has used so far, and how it ends."""

    claim: Claim
    usage: Usage
    chunks: int = 0

    @property
    def run(self) -> ExtractionRun:
        return self.claim.run

    def costs(self) -> dict[str, Any]:
        u = self.usage
        return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                "prompt_chars": u.prompt_chars, "latency_ms": u.latency_ms, "model_calls": u.model_calls,
                "chunks": self.chunks, "cost_usd": run_cost(model=self.run.model, prompt_tokens=u.prompt_tokens,
                                                            completion_tokens=u.completion_tokens)}

    def end(self, status: str, **values: Any) -> bool:
        """Record how the attempt ended, unless a newer attempt took the run over meanwhile."""
        run = self.run
        with transaction.atomic():
            SessionContext.objects.select_for_update().filter(pk=run.session_id).values_list("pk").first()
            self.claim.release()  # the attempt ends here either way
            if not finish(run, status, attempt=run.attempts, **self.costs(), **values):
                return False
            if status == ExtractionRun.Status.FAILED and (held := backing_off(run.session_id)) is not None:
                # Said where agents and staff look first: the run that started (or lengthened) the wait.
                run.error = f"{run.error[:3000]}\n{SKIP_PREFIX}: {held.describe()}."
                ExtractionRun.objects.filter(pk=run.pk).update(error=run.error)
            _send_waiting(run.session_id)
        return True


def _send_waiting(session_pk: int) -> Any:
    """A run that waited for this one is sent when this one ends (on commit)."""
    waiting = next_queued(session_pk)
    if waiting is not None:
        mark_sent(waiting)
    return waiting


def _unseen(session_pk: int, cursor_seq: int) -> list[PromptMessage]:
    rows = (Message.objects.filter(session_id=session_pk, seq__gt=cursor_seq).order_by("seq")
            .values_list("seq", "role", "content"))
    return [PromptMessage(seq, role, content) for seq, role, content in rows]


def extraction_run(*, run_id: str, extractor: Extractor | None = None) -> Claim:
    """Do one queued run. Returns the claim; Decision.LATER asks the caller (the task) to try again later."""
    extractor = extractor or get_extractor()
    taken = claim(run_id, extractor=extractor.name, model=extractor.model)
    if taken.decision != Decision.GO:
        return taken
    attempt = Attempt(taken, Usage())
    try:
        if (held := backing_off(attempt.run.session_id, trigger=attempt.run.trigger)) is not None:
            attempt.end(ExtractionRun.Status.SKIPPED, error=skip_reason(held))  # queued before the wait began
        elif (spent := budget_spent(session_pk=attempt.run.session_id)) is not None:
            attempt.end(ExtractionRun.Status.BUDGET_EXCEEDED, error=spent)  # before any call: the cursor stays
        else:
            _rounds(attempt, extractor)
    except Exception as exc:  # noqa: BLE001 - the soft time limit and anything unforeseen end the run here
        logger.exception("run %s failed", attempt.run.pk)
        attempt.end(ExtractionRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000])
    finally:
        if taken.lock_key is not None:  # the end could not be recorded (the database went away?)
            try:
                taken.release()
            except Exception:  # noqa: BLE001 - closing the connection gives the lock back as well
                logger.warning("run %s: attempt lock not given back; closing the connection", attempt.run.pk)
                connection.close()
    return taken


def _rounds(attempt: Attempt, extractor: Extractor) -> None:
    """Extract and apply; when others changed a field the model changed too, wait and recompute from what they
    wrote, for as long as the attempt's deadline allows, then hand the messages to a follow-up run."""
    row = attempt.claim.session  # read under the claim's lock; a recompute reads the snapshot again
    deadline = Deadline()
    for conflicts in itertools.count():
        if conflicts and not deadline.allows(2 * llm.worst_call_seconds()):
            _hand_over(attempt)
            return
        try:
            base = Base.of(row if row is not None else SessionContext.objects.get(pk=attempt.run.session_id))
        except Exception as exc:  # noqa: BLE001 - any unreadable snapshot must stop the run
            logger.exception("run %s: previous snapshot unreadable", attempt.run.pk)
            attempt.end(ExtractionRun.Status.FAILED,
                        error=f"Could not read the previous snapshot ({exc}); nothing was changed.")
            return
        row = None
        if _round(attempt, extractor, base, deadline) != Outcome.CONFLICT:
            return
        logger.info("run %s: a field the model changed was changed meanwhile; recomputing", attempt.run.pk)
        time.sleep(min(RECOMPUTE_WAIT * 2**conflicts, RECOMPUTE_WAIT_MAX))


def _hand_over(attempt: Attempt) -> None:
    """Contention alone never fails a run: its messages stay unseen and a follow-up run takes them up."""
    follow_up = ExtractionRun.objects.create(session_id=attempt.run.session_id, trigger="follow-up")
    attempt.end(ExtractionRun.Status.SKIPPED, error=f"Handed over to run {follow_up.pk}: the fields the model "
                "changed kept being changed by others during this attempt; the messages stay unseen until then.")


def _round(attempt: Attempt, extractor: Extractor, base: Base, deadline: Deadline) -> Outcome | None:
    """One extraction from `base`; None when the attempt ended here (nothing new, or a failure)."""
    messages = _unseen(attempt.run.session_id, base.cursor_seq)
    if not messages:
        attempt.end(ExtractionRun.Status.SKIPPED, from_version=base.version, to_version=base.version, error="")
        return None
    snapshot = dict(base.previous)
    consumed: list[list[PromptMessage]] = []
    remaining = messages
    left_over = ""  # why a chunk after the first was not taken in
    while remaining and len(consumed) < settings.SESSIONCTX_MAX_CHUNKS_PER_RUN:
        if consumed and not deadline.allows(2 * llm.worst_call_seconds()):
            break  # keep what is done; a follow-up run takes the rest
        # Each chunk is cut against the snapshot its prompt carries, which the chunks before it may have grown.
        chunk = next(chunk_messages(remaining, budget=settings.SESSIONCTX_PROMPT_BUDGET_CHARS, extractor=extractor,
                                    previous=snapshot, mode=base.mode))
        remaining = remaining[len(chunk):]
        try:
            result = extractor.extract(previous=snapshot, mode=base.mode, messages=chunk, deadline=deadline)
        except ExtractionError as exc:
            attempt.usage.add(exc.usage)
            attempt.chunks += 1
            if consumed:
                # The chunks before it are paid for and sound: write them; a follow-up run tries this one again
                # (and fails as a run of its own, backing off, if the model keeps failing on it).
                remaining = [*chunk, *remaining]
                left_over = (f"Messages {chunk[0].seq}-{chunk[-1].seq} not taken in ({exc.reason[:500]}); a "
                             "follow-up run tries them again.")
                break
            attempt.end(ExtractionRun.Status.FAILED, error=exc.reason[:4000], from_version=base.version,
                        first_seq=chunk[0].seq, last_seq=chunk[-1].seq)
            return None
        attempt.usage.add(result.usage)
        snapshot.update(result.snapshot)
        consumed.append(chunk)
    attempt.chunks += len(consumed)
    snapshot, contained = contain(base.previous, snapshot, [m for chunk in consumed for m in chunk])
    try:
        changes = validate_snapshot({name: snapshot[name] for name in fields_for(base.mode)})
    except InvalidInput as exc:
        attempt.end(ExtractionRun.Status.FAILED, from_version=base.version,
                    error=f"The extractor produced an invalid snapshot: {exc.details or exc.message}")
        return None
    first_seq, last_seq = consumed[0][0].seq, consumed[-1][-1].seq
    note = "; ".join([*contained, *([left_over] if left_over else [])])
    # An answer whose changes were held back did read the messages: not a no_change.
    if not contained and all(changes[name] == base.previous[name] for name in changes):
        known = _words(" ".join(str(value) for value in base.previous.values()))
        informative = [m for chunk in consumed for m in chunk if len(_words(m.content) - known) >= 3]
        if informative:
            earlier = ExtractionRun.objects.filter(session_id=attempt.run.session_id, first_seq=first_seq,
                                                   status=ExtractionRun.Status.NO_CHANGE).count()
            limit = settings.SESSIONCTX_UNCHANGED_RETRIES
            what = (f"The answer changed nothing although messages {first_seq}-{last_seq} carry information "
                    f"(e.g. {informative[0].content[:80]!r})")
            if earlier < limit:
                # Moving the cursor would drop those messages for good: the next run shows them again.
                attempt.end(ExtractionRun.Status.NO_CHANGE, from_version=base.version, to_version=base.version,
                            first_seq=first_seq, last_seq=last_seq,
                            error=" ".join([f"{what}; they stay unseen for the next run ({earlier + 1} of {limit}).",
                                            *([left_over] if left_over else [])]))
                return None
            # A session must not be stuck on one model's view of them: after the bound, its answer stands.
            note = " ".join([f"{what}; accepted after {earlier} runs that changed nothing either.",
                             *([left_over] if left_over else [])])
    return _apply(attempt, base, changes, first_seq=first_seq, last_seq=last_seq,
                  more=bool(remaining), model=extractor.model or extractor.name, note=note)


def _words(text: str) -> set[str]:
    """The words of substance in a text: a message with three the snapshot lacks carries information; small talk
    ("ok thanks!", "good luck with the conversion") does not."""
    return {word for word in _WORD.findall(text.lower()) if word not in _SMALL_TALK}


def _apply(attempt: Attempt, base: Base, changes: dict[str, Any], *, first_seq: int, last_seq: int, more: bool,
           model: str, note: str = "") -> Outcome:
    """Write the extracted snapshot, its revision, the cursor and the run record together, or nothing."""
    run, claim_ = attempt.run, attempt.claim
    with transaction.atomic():
        session = SessionContext.objects.select_for_update().filter(pk=run.session_id).first()
        if session is None:
            claim_.release()
            return Outcome.STALE
        # Locks are read under the row lock: an editor's lock taken during the model call still holds.
        changes, withheld = locks_withhold(session, values=changes, seen=base.previous)
        values, unmerged = changes, []
        if (session.cursor_seq, session.mode) != (base.cursor_seq, base.mode):
            unmerged = ["cursor"]  # another extraction or a rewind moved the cursor: start from where it is
        elif session.version != base.version:
            values, unmerged = merge(base=base.previous, theirs=session.snapshot(), ours=changes)
        if unmerged:
            if ExtractionRun.objects.filter(pk=run.pk, status=ExtractionRun.Status.RUNNING,
                                            attempts=run.attempts).exists():
                return Outcome.CONFLICT  # the attempt goes on (recomputes), lock and all
            claim_.release()
            return Outcome.STALE
        snapshot_write(session, values=values, source=Revision.Source.EXTRACTION, actor=Actor.for_model(model),
                       reason=f"Extraction run {run.pk}: messages {first_seq}-{last_seq}",
                       extra={"cursor_seq": last_seq})
        proposals_record(session, withheld=withheld, run=run)
        # Only the attempt that still owns the run finishes it; a stale one (a newer attempt took the run over
        # and its result counts) undoes its write by rolling back.
        owned = finish(run, ExtractionRun.Status.SUCCEEDED, attempt=run.attempts, error=note,
                       from_version=base.version, to_version=session.version, first_seq=first_seq,
                       last_seq=last_seq, **attempt.costs())
        claim_.release()  # under the row lock, before the commit: a session-level lock ignores a rollback
        if not owned:
            transaction.set_rollback(True)
            return Outcome.STALE
        if _send_waiting(session.pk) is None and more:
            follow_up = ExtractionRun.objects.create(session_id=session.pk, trigger="follow-up",
                                                     enqueued_at=timezone.now())
            send_on_commit(follow_up.pk)
    return Outcome.APPLIED


def extraction_run_now(*, session: SessionContext, trigger: str) -> ExtractionRun:
    """A run done here and now, in this process (management commands); returns how it ended."""
    run = ExtractionRun.objects.create(session_id=session.pk, trigger=trigger)
    extraction_run(run_id=str(run.pk))
    return ExtractionRun.objects.get(pk=run.pk)
