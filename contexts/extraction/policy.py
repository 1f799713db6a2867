"""When to ask the model for an update: the session's update policy (or SESSIONCTX_UPDATE_POLICY).

- `every_turn`: each posted batch that completes a turn queues one (the cost of a model call per turn).
- `every_n_turns:N`: once N completed turns are unseen.
- `tokens:T`: once the unseen messages exceed T tokens (estimated as characters / 4, as no tokenizer is at hand
  for an arbitrary OpenAI-compatible model).
- `idle:S`: once the conversation has been quiet for S seconds: found by the periodic sweep, or by a read.

`update_due` is the one rule: posting (services.messages), the sweep (tasks) and reads (api.context) all ask it.
A read with `fresh=true` asks for an update of whatever is unseen, whatever the policy, and waits for it; so does
the sweep for a session whose back-off after failed runs is over (backoff.py), whatever the policy.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Length
from django.utils import timezone

from ..exceptions import NotFound
from ..infra.database import pause_between_queries
from ..models import UPDATE_POLICY_PATTERN, ExtractionRun, Message, SessionContext, Status
from ..selectors.usage import budget_day_start
from .backoff import DECISIVE, backoff_of
from .runs import extraction_request

_POLICY = re.compile(rf"^(?:{UPDATE_POLICY_PATTERN})$")
CHARS_PER_TOKEN = 4
# How often a fresh read looks again at the run it waits for.
FRESH_POLL_SECONDS = 0.05
SWEEP_BATCH = 500

TURN, SWEEP, READ, FRESH_READ, BACKOFF_OVER = "turn", "sweep", "read", "fresh_read", "backoff_over"
PENDING = (ExtractionRun.Status.QUEUED, ExtractionRun.Status.RUNNING)


@dataclass(frozen=True)
class Policy:
    kind: str  # every_turn, every_n_turns, idle, tokens
    value: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind == "every_turn" else f"{self.kind}:{self.value}"


def is_valid_policy(text: str) -> bool:
    return bool(_POLICY.match(text))


def parse_policy(text: str) -> Policy:
    """`every_turn`, `every_n_turns:N`, `idle:S` or `tokens:T`; ValueError otherwise."""
    if not is_valid_policy(text):
        raise ValueError(f"update policy must be every_turn, every_n_turns:N, idle:S or tokens:T, not {text!r}")
    kind, _, value = text.partition(":")
    return Policy(kind, int(value or 0))


def policy_of(session: SessionContext) -> Policy:
    """The session's own policy, else the installation's."""
    return parse_policy(session.update_policy or settings.SESSIONCTX_UPDATE_POLICY)


def _unseen(session: SessionContext):
    return Message.objects.filter(session_id=session.pk, seq__gt=session.cursor_seq)


def unseen_turns(session: SessionContext) -> int:
    """Completed turns among the unseen messages: the first assistant message after each user message. A
    tool-calling agent's [user, assistant, tool, assistant] is one turn; an agent's greeting before the user said
    anything is none."""
    roles = list(_unseen(session).order_by("seq").values_list("role", flat=True))
    # The unseen part may begin inside a turn: one whose user message was seen and not yet answered then.
    last_seen = (Message.objects.filter(session_id=session.pk, seq__lte=session.cursor_seq,
                                        role__in=[Message.Role.USER, Message.Role.ASSISTANT])
                 .order_by("-seq").values_list("role", flat=True).first())
    opened = last_seen == Message.Role.USER
    turns = 0
    for role in roles:
        if role == Message.Role.USER:
            opened = True
        elif role == Message.Role.ASSISTANT and opened:
            turns += 1
            opened = False
    return turns


def unseen_tokens(session: SessionContext) -> int:
    chars = _unseen(session).aggregate(n=Sum(Length("content")))["n"] or 0
    return chars // CHARS_PER_TOKEN


def _quiet_since(session: SessionContext) -> datetime | None:
    return _unseen(session).aggregate(t=Max("created_at"))["t"]


def _idle_due(session: SessionContext, seconds: int, now: datetime) -> bool:
    newest = _quiet_since(session)
    if newest is None or newest > now - timedelta(seconds=seconds):
        return False
    # Once per quiet period: a run already asked for since the last message (pending, failed or no_change) is
    # not asked for again until the conversation moves on, or a failing model would be called every sweep. One
    # refused for a spent daily budget on an earlier day does not count: its run said "after midnight".
    return not (ExtractionRun.objects.filter(session_id=session.pk, created_at__gte=newest)
                .exclude(status=ExtractionRun.Status.BUDGET_EXCEEDED, created_at__lt=budget_day_start(now))
                .exists())


def update_due(*, session: SessionContext, event: str, now: datetime | None = None) -> bool:
    """Whether this event (a posted turn, the sweep, a read, a fresh read) should queue an update now."""
    if not settings.SESSIONCTX_AUTO_UPDATE or not session.has_unseen_messages:
        return False
    # While a person owns the conversation the model keeps out of it, unless configured otherwise; what was said
    # meanwhile is read when the person hands it back.
    if session.status == Status.HUMAN and not settings.SESSIONCTX_EXTRACT_WHILE_HUMAN:
        return False
    if event in (FRESH_READ, BACKOFF_OVER):
        return True
    policy = policy_of(session)
    if policy.kind == "idle":
        return event in (SWEEP, READ) and _idle_due(session, policy.value, now or timezone.now())
    if event != TURN:
        return False
    if policy.kind == "every_n_turns":
        return unseen_turns(session) >= policy.value
    if policy.kind == "tokens":
        return unseen_tokens(session) > policy.value
    return True


def update_if_due(*, session: SessionContext, event: str, trigger: str,
                  now: datetime | None = None) -> ExtractionRun | None:
    """Queue an update when the policy says so (sent to the workers when the caller's transaction commits)."""
    if update_due(session=session, event=event, now=now):
        return extraction_request(session=session, trigger=trigger)
    return None


def idle_sweep(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Periodic: queue the updates that time makes due, not a turn: each idle-policy session quiet long enough with
    unseen messages, and each session whose back-off after failed runs is over (backoff_sweep)."""
    now = now or timezone.now()
    queued = _quiet_sweep(now=now, limit=limit)
    return queued + (backoff_sweep(now=now, limit=limit - queued) if queued < limit else 0)


def _asked(*, session: SessionContext, event: str, trigger: str, now: datetime) -> bool:
    """A sweep's update_if_due: a session erased since the sweep listed it is passed over, not the end of the sweep."""
    try:
        return update_if_due(session=session, event=event, trigger=trigger, now=now) is not None
    except NotFound:
        return False


def _quiet_sweep(*, now: datetime, limit: int) -> int:
    idle = Q(update_policy__startswith="idle:")
    if parse_policy(settings.SESSIONCTX_UPDATE_POLICY).kind == "idle":
        idle |= Q(update_policy="")
    # Every candidate is looked at (not the first `limit`): sessions still talking would otherwise hide the quiet
    # ones behind them. At most `limit` are queued per sweep; the rest go on the next one.
    candidates = (SessionContext.objects.filter(idle, last_message_seq__gt=F("cursor_seq"))
                  .exclude(runs__status__in=PENDING).distinct().order_by("pk"))
    queued = 0
    for session in candidates.iterator(chunk_size=limit):
        if _asked(session=session, event=SWEEP, trigger="idle", now=now):
            queued += 1
            if queued >= limit:
                break
    return queued


def backoff_sweep(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Queue one update for each session with unseen messages whose back-off is over: the messages its turns left
    waiting get their try (one per wait: a failure starts a longer one; a turn after the wait asks for itself)."""
    now = now or timezone.now()
    latest = (ExtractionRun.objects.filter(session_id=OuterRef("pk"), status__in=DECISIVE)
              .order_by("-created_at").values("status")[:1])
    # Only sessions with a failure recent enough for its wait to have ended lately (a day of margin for a beat that
    # was down): sessions that merely have unseen messages (every_n_turns, a person owns them) are not looked at.
    recent = now - timedelta(seconds=float(settings.SESSIONCTX_BACKOFF_MAX)) - timedelta(days=1)
    failed = ExtractionRun.objects.filter(status=ExtractionRun.Status.FAILED, finished_at__gte=recent)
    candidates = (SessionContext.objects.filter(pk__in=failed.values("session_id"),
                                                last_message_seq__gt=F("cursor_seq"))
                  .exclude(runs__status__in=PENDING).annotate(latest=Subquery(latest))
                  .filter(latest=ExtractionRun.Status.FAILED).order_by("pk"))
    queued = 0
    for session in candidates.iterator(chunk_size=limit):
        held = backoff_of(session.pk)
        if held is None or held.until > now:
            continue
        # The wait is over and something asked already; one refused for a spent daily budget on an earlier day
        # does not count (its run said "after midnight"), as for the idle sweep.
        if (ExtractionRun.objects.filter(session_id=session.pk, created_at__gte=held.until)
                .exclude(status=ExtractionRun.Status.BUDGET_EXCEEDED, created_at__lt=budget_day_start(now)).exists()):
            continue
        if _asked(session=session, event=BACKOFF_OVER, trigger="backoff", now=now):
            queued += 1
            if queued >= limit:
                break
    return queued


@dataclass
class Freshness:
    fresh: bool  # every message posted before the read is in the snapshot
    waited: float


def context_refresh(*, session: SessionContext, wait: float | None = None) -> Freshness:
    """A read that asks for freshness: queue an update of what is unseen, and wait up to `wait` seconds
    (SESSIONCTX_FRESH_WAIT) for the runs of this session to take in every message posted before the read."""
    wait = settings.SESSIONCTX_FRESH_WAIT if wait is None else wait
    start = time.monotonic()
    target = session.last_message_seq
    if session.cursor_seq >= target:
        return Freshness(True, 0.0)
    asked = False
    while True:
        # Whether a run is pending is asked before the cursor is read: a run that ends between the two reads is
        # then seen in the cursor, not taken for one that ended without taking the messages in.
        pending = ExtractionRun.objects.filter(session_id=session.pk, status__in=PENDING).exists()
        cursor = SessionContext.objects.filter(pk=session.pk).values_list("cursor_seq", flat=True).first()
        if cursor is None or cursor >= target:
            return Freshness(cursor is not None, time.monotonic() - start)
        if not pending:
            if asked:
                # Our run ended without taking everything in (failed, changed nothing): no point waiting.
                return Freshness(False, time.monotonic() - start)
            # Asked once: when no run is pending, or when the pending one (begun before the newest messages) ended.
            session.refresh_from_db()
            asked = True
            if update_if_due(session=session, event=FRESH_READ, trigger="fresh") is None:
                return Freshness(False, time.monotonic() - start)  # the model is off, or a person owns it
            continue
        if time.monotonic() - start >= wait:
            return Freshness(False, time.monotonic() - start)
        pause_between_queries(FRESH_POLL_SECONDS)
