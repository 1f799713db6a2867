"""Every write to a session: snapshots, messages, handoffs, deletion, extraction requests.

The API, the staff pages, the admin and the Celery tasks all call these functions; nothing
else writes a snapshot. Each snapshot change is a conditional UPDATE on `version` plus one
Revision row, in one transaction, so no update is lost and every change is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from . import readcache
from .exceptions import InvalidInput, NotFound, StateConflict, VersionConflict
from .models import (
    SESSION_ID_PATTERN,
    ApiKey,
    ExtractionRun,
    HandoffEvent,
    Message,
    Mode,
    Revision,
    SessionContext,
    Status,
)

logger = logging.getLogger(__name__)

CONTENT_FIELDS = ("summary", "goal", "plan", "progress", "handoff_note")
EMPTY_CONTENT: dict[str, Any] = {"summary": "", "goal": "", "plan": [], "progress": [], "handoff_note": ""}


@dataclass(frozen=True)
class Actor:
    """Who made a change: an API key, a person, a model, or the system."""

    label: str
    user: AbstractBaseUser | None = None
    api_key: ApiKey | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Actor:
        return cls(label=f"user:{user.get_username()}", user=user)

    @classmethod
    def for_api_key(cls, api_key: ApiKey) -> Actor:
        return cls(label=f"key:{api_key.prefix}:{api_key.name}"[:255], api_key=api_key)

    @classmethod
    def for_model(cls, model: str) -> Actor:
        return cls(label=f"model:{model}"[:255])

    @classmethod
    def system(cls, what: str = "system") -> Actor:
        return cls(label=what)


# --- validation ------------------------------------------------------------------------------


def validate_session_id(session_id: str) -> str:
    import re

    if not isinstance(session_id, str) or not re.fullmatch(SESSION_ID_PATTERN, session_id):
        raise InvalidInput(
            "A session id is 1-255 characters of A-Z a-z 0-9 . _ : @ -",
            code="invalid_session_id",
            details={"session_id": str(session_id)[:300]},
        )
    return session_id


def _validate_steps(name: str, value: Any, errors: dict[str, str]) -> list[str] | None:
    if not isinstance(value, list):
        errors[name] = "Must be a list of strings."
        return None
    if len(value) > settings.SESSIONCTX_MAX_PLAN_STEPS:
        errors[name] = f"At most {settings.SESSIONCTX_MAX_PLAN_STEPS} steps."
        return None
    steps = []
    for i, step in enumerate(value):
        if not isinstance(step, str) or not step.strip():
            errors[name] = f"Step {i + 1} must be a non-empty string."
            return None
        if len(step) > settings.SESSIONCTX_MAX_STEP_CHARS:
            errors[name] = f"Step {i + 1} is longer than {settings.SESSIONCTX_MAX_STEP_CHARS} characters."
            return None
        steps.append(step.strip())
    return steps


def validate_content(changes: dict[str, Any]) -> dict[str, Any]:
    """Check snapshot fields against types and size bounds; return them cleaned or raise InvalidInput."""
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    unknown = sorted(set(changes) - set(CONTENT_FIELDS) - {"mode"})
    for name in unknown:
        errors[name] = "Unknown field."
    limits = {
        "summary": settings.SESSIONCTX_MAX_SUMMARY_CHARS,
        "goal": settings.SESSIONCTX_MAX_GOAL_CHARS,
        "handoff_note": settings.SESSIONCTX_MAX_GOAL_CHARS,
    }
    for name, limit in limits.items():
        if name not in changes:
            continue
        value = changes[name]
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[name] = "Must be a string."
        elif len(value) > limit:
            errors[name] = f"At most {limit} characters."
        else:
            cleaned[name] = value.strip()
    for name in ("plan", "progress"):
        if name in changes:
            steps = _validate_steps(name, changes[name], errors)
            if steps is not None:
                cleaned[name] = steps
    if "mode" in changes:
        if changes["mode"] not in Mode.values:
            errors["mode"] = f"Must be one of {', '.join(Mode.values)}."
        else:
            cleaned["mode"] = changes["mode"]
    if errors:
        raise InvalidInput("The context is not valid; see details.", details={"fields": errors})
    return cleaned


# --- sessions --------------------------------------------------------------------------------


def session_get_or_create(
    *,
    session_id: str,
    mode: str | None = None,
    user_id: str | None = None,
    agent_id: str | None = None,
    team_id: str | None = None,
) -> tuple[SessionContext, bool]:
    """The session with this id, created (version 0, empty) if it does not exist yet."""
    validate_session_id(session_id)
    if mode is not None and mode not in Mode.values:
        raise InvalidInput(f"mode must be one of {', '.join(Mode.values)}", details={"fields": {"mode": "Invalid."}})
    for name, value in (("user_id", user_id), ("agent_id", agent_id), ("team_id", team_id)):
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise InvalidInput(f"{name} must be a string of at most 255 characters",
                               details={"fields": {name: "Invalid."}})
    defaults = {
        "mode": mode or settings.SESSIONCTX_DEFAULT_MODE,
        "user_id": user_id or "",
        "agent_id": agent_id or "",
        "team_id": team_id or "",
    }
    try:
        session, created = SessionContext.objects.get_or_create(session_id=session_id, defaults=defaults)
    except IntegrityError:
        # Two first posts raced; the other one created it.
        session, created = SessionContext.objects.get(session_id=session_id), False
    if created:
        # An entry cached for an earlier session of this id (deleted since) must not outlive it.
        readcache.context_changed(session_id)
    else:
        # Fill in owners that were unknown when the session was first seen; never overwrite them.
        missing = {k: v for k, v in defaults.items() if k != "mode" and v and not getattr(session, k)}
        if missing:
            SessionContext.objects.filter(pk=session.pk).update(**missing)
            readcache.context_changed(session.session_id)
            for k, v in missing.items():
                setattr(session, k, v)
    return session, created


@transaction.atomic
def session_delete(*, session: SessionContext, actor: Actor) -> None:
    """Erase a session with its messages, revisions, runs and handoff events (right to erasure)."""
    logger.info("session %s deleted by %s", session.session_id, actor.label)
    session.delete()
    readcache.context_changed(session.session_id)


# --- snapshots ------------------------------------------------------------------------------------


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [name for name in after if before.get(name) != after[name]]


@transaction.atomic
def _apply(
    *,
    session: SessionContext,
    expected_version: int,
    values: dict[str, Any],
    source: str,
    actor: Actor,
    reason: str = "",
    extra: dict[str, Any] | None = None,
) -> SessionContext:
    """Write snapshot values if the stored version is still `expected_version`, with a revision."""
    current = SessionContext.objects.filter(pk=session.pk).first()
    if current is None:
        raise NotFound(f"Session {session.session_id!r} does not exist.", details={"session_id": session.session_id})
    if current.version != expected_version:
        raise VersionConflict(expected=expected_version, current=current.version)
    _write(current, values=values, source=source, actor=actor, reason=reason, extra=extra)
    _sync(session, current)
    return session


def _write(current: SessionContext, *, values: dict[str, Any], source: str, actor: Actor, reason: str = "",
           extra: dict[str, Any] | None = None) -> None:
    """The write of `_apply`, on `current`: the session's row as read in the caller's transaction, whose
    version the write is conditional on, updated in place. No savepoint of its own: an error rolls back the
    caller's transaction."""
    expected_version = current.version
    before = current.snapshot()
    after = {**before, **values}
    changed = _changed_fields(before, after)
    extra = dict(extra or {})
    now = timezone.now()
    if not changed:
        # Nothing in the snapshot changes: no new version, but side fields (the cursor) still move.
        if extra:
            updated = SessionContext.objects.filter(pk=current.pk, version=expected_version).update(
                **extra, updated_at=now
            )
            if not updated:
                raise VersionConflict(expected=expected_version, current=_current_version(current))
            readcache.context_changed(current.session_id)  # updated_at is in the answer
            _set(current, extra)
        return

    new_version = expected_version + 1
    # Conditional on the version we read: a concurrent writer that got there first makes this
    # match no row, and the caller gets a conflict instead of silently overwriting.
    updated = SessionContext.objects.filter(pk=current.pk, version=expected_version).update(
        **values, **extra, version=new_version, updated_at=now
    )
    if not updated:
        raise VersionConflict(expected=expected_version, current=_current_version(current))
    readcache.context_changed(current.session_id)
    Revision.objects.create(
        session_id=current.pk,
        version=new_version,
        source=source,
        actor=actor.label,
        actor_user=actor.user,
        reason=reason,
        snapshot=after,
        changed_fields=changed,
    )
    _set(current, {**values, **extra, "version": new_version, "updated_at": now})


def _current_version(session: SessionContext) -> int:
    return SessionContext.objects.filter(pk=session.pk).values_list("version", flat=True).first() or 0


def _set(instance: SessionContext, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(instance, name, value)


def _sync(target: SessionContext, source: SessionContext) -> None:
    for f in SessionContext._meta.concrete_fields:
        setattr(target, f.attname, getattr(source, f.attname))


def snapshot_update(
    *,
    session: SessionContext,
    expected_version: int,
    changes: dict[str, Any],
    source: str,
    actor: Actor,
    reason: str = "",
    cursor_seq: int | None = None,
) -> SessionContext:
    """Change snapshot fields (a partial update) if nobody else changed the snapshot meanwhile."""
    values = validate_content(changes)
    extra = {"cursor_seq": cursor_seq} if cursor_seq is not None else None
    return _apply(session=session, expected_version=expected_version, values=values, source=source,
                  actor=actor, reason=reason, extra=extra)


def snapshot_replace(
    *,
    session: SessionContext,
    expected_version: int,
    content: dict[str, Any],
    source: str,
    actor: Actor,
    reason: str = "",
) -> SessionContext:
    """Replace the whole snapshot content: fields not given become empty."""
    values = {**EMPTY_CONTENT, **content}
    return snapshot_update(session=session, expected_version=expected_version, changes=values, source=source,
                           actor=actor, reason=reason)


def _require_reason(reason: str | None) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("A reason is required.", code="reason_required",
                           details={"fields": {"reason": "This field is required."}})
    return reason.strip()[:2000]


def snapshot_reset(
    *,
    session: SessionContext,
    reason: str,
    actor: Actor,
    expected_version: int | None = None,
) -> SessionContext:
    """Empty the snapshot; the history keeps every earlier version."""
    reason = _require_reason(reason)
    if expected_version is None:
        expected_version = _current_version(session)
    return _apply(session=session, expected_version=expected_version, values=dict(EMPTY_CONTENT),
                  source=Revision.Source.RESET, actor=actor, reason=reason)


def snapshot_revert(
    *,
    session: SessionContext,
    to_version: int,
    expected_version: int,
    reason: str,
    actor: Actor,
    source: str,
) -> SessionContext:
    """Restore the content as it was at `to_version`, as a new revision."""
    reason = _require_reason(reason)
    revision = Revision.objects.filter(session=session, version=to_version).first()
    if revision is None:
        raise NotFound(f"Session {session.session_id!r} has no version {to_version}.",
                       details={"version": to_version})
    content = {name: revision.snapshot.get(name, EMPTY_CONTENT[name]) for name in CONTENT_FIELDS}
    return _apply(session=session, expected_version=expected_version, values=content, source=source,
                  actor=actor, reason=f"Reverted to version {to_version}: {reason}")


# --- messages ---------------------------------------------------------------------------------------


@dataclass
class AppendResult:
    stored: list[Message] = field(default_factory=list)
    duplicates: list[Message] = field(default_factory=list)

    @property
    def completes_turn(self) -> bool:
        """A newly stored batch that ends with the assistant's reply completes a turn."""
        return bool(self.stored) and self.stored[-1].role == Message.Role.ASSISTANT


def _validate_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list.", details={"fields": {"messages": "Required."}})
    if len(messages) > settings.SESSIONCTX_MAX_MESSAGES_PER_POST:
        raise InvalidInput(f"At most {settings.SESSIONCTX_MAX_MESSAGES_PER_POST} messages per post.",
                           details={"fields": {"messages": "Too many."}})
    cleaned = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidInput(f"{where} must be an object.", details={"fields": {where: "Invalid."}})
        unknown = set(m) - {"role", "content", "idempotency_key"}
        if unknown:
            raise InvalidInput(f"{where} has unknown fields: {', '.join(sorted(unknown))}.",
                               details={"fields": {where: "Unknown fields."}})
        role, content, key = m.get("role"), m.get("content"), m.get("idempotency_key")
        if role not in Message.Role.values:
            raise InvalidInput(f"{where}.role must be one of {', '.join(Message.Role.values)}.",
                               details={"fields": {f"{where}.role": "Invalid."}})
        if not isinstance(content, str) or len(content) > settings.SESSIONCTX_MAX_MESSAGE_CHARS:
            raise InvalidInput(
                f"{where}.content must be a string of at most {settings.SESSIONCTX_MAX_MESSAGE_CHARS} characters.",
                details={"fields": {f"{where}.content": "Invalid."}},
            )
        if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
            raise InvalidInput(f"{where}.idempotency_key must be a string of 1-255 characters.",
                               details={"fields": {f"{where}.idempotency_key": "Invalid."}})
        cleaned.append({"role": role, "content": content, "idempotency_key": key})
    return cleaned


@transaction.atomic
def messages_append(*, session: SessionContext, messages: list[dict[str, Any]]) -> AppendResult:
    """Store a batch in order; a message whose idempotency key is already stored is not stored twice."""
    batch = _validate_messages(messages)
    # The row lock serialises sequence numbers per session (SQLite: the IMMEDIATE transaction does).
    locked = SessionContext.objects.select_for_update().only("id", "last_message_seq").get(pk=session.pk)
    keys = [m["idempotency_key"] for m in batch if m["idempotency_key"]]
    existing = {
        m.idempotency_key: m for m in Message.objects.filter(session_id=session.pk, idempotency_key__in=keys)
    } if keys else {}
    result = AppendResult()
    seen: set[str] = set()
    to_store = []
    seq = locked.last_message_seq
    for m in batch:
        key = m["idempotency_key"]
        if key and key in existing:
            result.duplicates.append(existing[key])
            continue
        if key and key in seen:
            continue
        if key:
            seen.add(key)
        seq += 1
        to_store.append(Message(session_id=session.pk, seq=seq, **m))
    if to_store:
        result.stored = Message.objects.bulk_create(to_store)
        SessionContext.objects.filter(pk=session.pk).update(last_message_seq=seq)
        session.last_message_seq = seq
    return result


# --- handoff ------------------------------------------------------------------------------------------


def _locked(session: SessionContext) -> SessionContext:
    found = SessionContext.objects.select_for_update().filter(pk=session.pk).first()
    if found is None:
        raise NotFound(f"Session {session.session_id!r} does not exist.", details={"session_id": session.session_id})
    return found


def _event(session: SessionContext, kind: str, actor: Actor, note: str = "") -> HandoffEvent:
    return HandoffEvent.objects.create(session_id=session.pk, kind=kind, actor=actor.label,
                                       actor_user=actor.user, note=note)


@transaction.atomic
def handoff_request(*, session: SessionContext, reason: str, actor: Actor) -> SessionContext:
    """The agent asks for a human: the session joins the staff queue."""
    reason = _require_reason(reason)
    current = _locked(session)
    if current.status == Status.HUMAN:
        raise StateConflict("A person already owns this conversation.", details={"status": current.status})
    if current.status == Status.HANDOFF_REQUESTED:
        _sync(session, current)
        return session  # asking twice is the same request
    return _status_change(session, current, actor, reason, Status.HANDOFF_REQUESTED, HandoffEvent.Kind.REQUESTED,
                          extra={"handoff_reason": reason, "handoff_requested_at": timezone.now()})


def _status_change(
    session: SessionContext,
    current: SessionContext,
    actor: Actor,
    reason: str,
    status: str,
    event_kind: str,
    *,
    extra: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> SessionContext:
    """Move the session to `status` (a snapshot change: new version and revision) and log the event."""
    before = current.snapshot()
    values = dict(values or {})
    after = {**before, **values, "status": status}
    new_version = current.version + 1
    now = timezone.now()
    fields = {**values, "status": status, **(extra or {})}
    updated = SessionContext.objects.filter(pk=current.pk, version=current.version).update(
        **fields, version=new_version, updated_at=now
    )
    if not updated:  # cannot happen under the row lock; refuse rather than overwrite
        raise VersionConflict(expected=current.version, current=_current_version(current))
    readcache.context_changed(current.session_id)
    Revision.objects.create(session_id=current.pk, version=new_version, source=Revision.Source.HANDOFF,
                            actor=actor.label, actor_user=actor.user, reason=reason, snapshot=after,
                            changed_fields=_changed_fields(before, after))
    _event(current, event_kind, actor, reason)
    _set(current, {**fields, "version": new_version, "updated_at": now})
    _sync(session, current)
    return session


@transaction.atomic
def handoff_claim(*, session: SessionContext, actor: Actor) -> SessionContext:
    """A person takes the conversation over; of two taking at once, one wins."""
    current = _locked(session)
    if current.status == Status.HUMAN:
        if current.assignee_id == getattr(actor.user, "pk", None):
            _sync(session, current)
            return session
        owner = current.assignee.get_username() if current.assignee else "someone else"
        raise StateConflict(f"{owner} has already taken this conversation.", code="already_taken",
                            details={"assignee": owner})
    if current.status == Status.CLOSED:
        raise StateConflict("This conversation is closed.", details={"status": current.status})
    return _status_change(session, current, actor, "Taken over by a person", Status.HUMAN,
                          HandoffEvent.Kind.CLAIMED, extra={"assignee": actor.user})


@transaction.atomic
def handoff_add_note(*, session: SessionContext, note: str, actor: Actor) -> HandoffEvent:
    if not isinstance(note, str) or not note.strip():
        raise InvalidInput("A note cannot be empty.", details={"fields": {"note": "This field is required."}})
    current = _locked(session)
    return _event(current, HandoffEvent.Kind.NOTE, actor, note.strip()[:4000])


@transaction.atomic
def handoff_release(*, session: SessionContext, note: str, actor: Actor) -> SessionContext:
    """Hand the conversation back to the agent, with a note in the snapshot saying what was done."""
    current = _locked(session)
    if current.status != Status.HUMAN:
        raise StateConflict("Only a conversation a person has taken can be handed back.",
                            details={"status": current.status})
    note = (note or "").strip()
    who = actor.user.get_username() if actor.user else actor.label
    handoff_note = f"Handled by {who} ({timezone.now():%Y-%m-%d %H:%M} UTC)"
    if note:
        handoff_note += f": {note}"
    handoff_note = handoff_note[: settings.SESSIONCTX_MAX_GOAL_CHARS]
    return _status_change(session, current, actor, note or "Handed back to the agent", Status.ACTIVE,
                          HandoffEvent.Kind.RELEASED, values={"handoff_note": handoff_note},
                          extra={"assignee": None, "handoff_reason": "", "handoff_requested_at": None})


@transaction.atomic
def session_close(*, session: SessionContext, actor: Actor, note: str = "") -> SessionContext:
    current = _locked(session)
    if current.status == Status.CLOSED:
        _sync(session, current)
        return session
    return _status_change(session, current, actor, (note or "Closed").strip(), Status.CLOSED,
                          HandoffEvent.Kind.CLOSED, extra={"assignee": None, "handoff_requested_at": None})


# --- extraction -------------------------------------------------------------------------------------
#
# A run goes queued -> running -> succeeded | failed | skipped. The model call happens outside any
# transaction (SQLite would hold its write lock through it); what makes it safe is
#   1. the claim: under the session's row lock, at most one run of a session is running, and each
#      claim bumps `attempts`, which fences out an older attempt of the same run that is still alive;
#   2. the apply: under the row lock again, the snapshot is written only if its version and cursor are
#      still the ones the extraction started from (else it recomputes from the new snapshot), in one
#      transaction with the revision, the cursor and the run record.
# A claim must tell a live earlier attempt (leave it be) from a dead one (take its run over). The lease
# (the hard time limit, plus a margin) is the bound that holds everywhere; on PostgreSQL an attempt also
# holds a session-level advisory lock keyed on its session, on its own connection, from its claim until it
# records how it ended. A worker that dies (SIGKILL, OOM killer) closes that connection and PostgreSQL drops
# the lock with it, so a claim that gets the lock knows no attempt on the session is alive and takes over at
# once. The lock is taken and given back only under the session's row lock (given back before the commit
# that ends the attempt), so a claim that finds it held is looking at a live attempt, never a finished one.
# No transaction stays open across the model call: the lock lives on the connection, not in a transaction.

UNSENT_NOTE = "Not sent to the workers yet"
FINISHED = (ExtractionRun.Status.SUCCEEDED, ExtractionRun.Status.FAILED, ExtractionRun.Status.SKIPPED)


def _extraction_lease() -> timedelta:
    # The hard time limit kills an attempt, so one started longer ago than that cannot still be alive.
    limit = settings.CELERY_TASK_TIME_LIMIT
    return timedelta(seconds=limit + max(2, limit // 10))


# First key of this app's advisory locks (two-int form), so they cannot meet another application's.
_LOCK_SPACE = 0x73637478


def extraction_lock_key(session_pk: int) -> tuple[int, int]:
    """The advisory lock a live attempt on the session holds (PostgreSQL).

    Past 2**31 sessions two share a key: a shared key can only make a dead attempt look alive (the lease
    then decides, as without the lock), never a live one look dead.
    """
    return _LOCK_SPACE, session_pk % 2**31


def _liveness_locks() -> bool:
    # Off for a connection pooler in transaction mode: a session-level lock would stay on a pooled connection.
    return connection.vendor == "postgresql" and settings.SESSIONCTX_EXTRACTION_LIVENESS_LOCKS


def _sessions_with_live_attempts() -> set[int]:
    """Second keys of the attempt locks held now, by any connection to this database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                       "AND classid = %s AND database = (SELECT oid FROM pg_database "
                       "WHERE datname = current_database())", [_LOCK_SPACE])
        return {int(objid) for (objid,) in cursor.fetchall()}


# The statements every run makes, as SQL: building and compiling them through the ORM cost a worker more CPU
# than running them (about 2.5 ms a run of some 8.5), and a run is little else besides the model call.
_RUNS, _SESSIONS, _MESSAGES = ExtractionRun._meta.db_table, SessionContext._meta.db_table, Message._meta.db_table
_SESSION_COLUMNS = ", ".join(f.column for f in SessionContext._meta.concrete_fields)
# The session row a run belongs to, found through the run and locked (FOR UPDATE where there is such a thing).
_SESSION_OF_RUN_SQL = (f"SELECT {_SESSION_COLUMNS} FROM {_SESSIONS} "
                       f"WHERE id = (SELECT session_id FROM {_RUNS} WHERE id = %s){{for_update}}")
# The claim of a queued run on a session with no running run (nearly every claim) in one statement; anything
# else goes through the full decision. The lock is tried only when a row comes back (an InitPlan).
_CLAIM_QUEUED_SQL = (f"UPDATE {_RUNS} SET status = %s, attempts = attempts + 1, started_at = %s, error = '', "
                     f"extractor = %s, model = %s WHERE id = %s AND status = %s AND attempts < %s AND NOT EXISTS "
                     f"(SELECT 1 FROM {_RUNS} other WHERE other.session_id = %s AND other.status = %s) "
                     f"RETURNING attempts{{lock}}")
_UNSEEN_SQL = f"SELECT seq, role, content FROM {_MESSAGES} WHERE session_id = %s AND seq > %s ORDER BY seq"
# The session row the apply checks and writes on, read whole and locked.
_APPLY_SESSION_SQL = f"SELECT {_SESSION_COLUMNS} FROM {_SESSIONS} WHERE id = %s{{for_update}}"
# The fenced end of a successful attempt, the attempt lock given back and the session's next queued run found,
# in one statement; no row back means a newer attempt owns the run.
_SUCCEEDED_SQL = (f"UPDATE {_RUNS} SET {{columns}} WHERE id = %s AND status = %s AND attempts = %s RETURNING "
                  f"(SELECT id FROM {_RUNS} WHERE session_id = %s AND status = %s ORDER BY created_at LIMIT 1)"
                  "{unlock}")


def _for_update() -> str:
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def extraction_request(*, session: SessionContext, trigger: str) -> ExtractionRun:
    """Queue a model-driven update of the snapshot; it runs after the current transaction commits.

    Requests that pile up while one is queued collapse into it: the run takes every message
    that is unseen when it starts. A queued run the broker never took (or that sat too long)
    is sent again.
    """
    with transaction.atomic():
        _locked(session)
        pending = (ExtractionRun.objects.filter(session_id=session.pk, status=ExtractionRun.Status.QUEUED)
                   .order_by("created_at").first())
        now = timezone.now()
        if pending is None:
            # Marked as sent now; the send on commit clears the mark if the broker refuses it.
            run = ExtractionRun.objects.create(session_id=session.pk, trigger=trigger, enqueued_at=now)
        else:
            run = pending
            stale = now - timedelta(seconds=settings.SESSIONCTX_EXTRACTION_RESEND_AFTER)
            if pending.enqueued_at is not None and pending.enqueued_at > stale:
                return pending
            ExtractionRun.objects.filter(pk=run.pk).update(enqueued_at=now)
            run.enqueued_at = now
        _send_on_commit(run.pk)
    return run


def _send_on_commit(run_id) -> None:
    from . import tasks  # tasks imports services; import here to keep the module graph acyclic

    run_id = str(run_id)
    transaction.on_commit(lambda: tasks.enqueue_extraction(run_id))


def extraction_mark_unsent(*, run_id: str, error: str) -> None:
    """The broker refused the run: it stays queued, saying so, until something sends it again."""
    note = (f"{UNSENT_NOTE} (broker unavailable: {error[:300]}). It is sent again by the next update request, "
            "the periodic sweep, a worker starting, or `manage.py update_context --pending`.")
    ExtractionRun.objects.filter(pk=run_id, status=ExtractionRun.Status.QUEUED).update(enqueued_at=None, error=note)


def extraction_pending(*, older_than: float | None = None) -> list[str]:
    """Ids of runs that need sending again (queued and not sent, or not recently; running past their lease),
    marked as sent now: the caller sends them, and marks a refused one unsent."""
    now = timezone.now()
    resend = now - timedelta(seconds=settings.SESSIONCTX_EXTRACTION_RESEND_AFTER if older_than is None
                             else older_than)
    queued = Q(status=ExtractionRun.Status.QUEUED) & (Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=resend))
    abandoned = Q(status=ExtractionRun.Status.RUNNING, started_at__lte=now - _extraction_lease())
    if not _liveness_locks():
        ids = list(ExtractionRun.objects.filter(queued | abandoned).order_by("created_at")
                   .values_list("id", flat=True))
    else:
        # A running run whose session lock nobody holds lost its worker: resent now, not after its lease.
        # The runs are read before the locks: a run seen running had its lock taken before that commit.
        rows = list(ExtractionRun.objects.filter(queued | Q(status=ExtractionRun.Status.RUNNING))
                    .order_by("created_at").values_list("id", "status", "session_id", "started_at"))
        lease_start = now - _extraction_lease()
        live = _sessions_with_live_attempts() if any(r[1] == ExtractionRun.Status.RUNNING for r in rows) else set()
        ids = [pk for pk, status, session_pk, started_at in rows
               if status != ExtractionRun.Status.RUNNING or started_at is None or started_at <= lease_start
               or extraction_lock_key(session_pk)[1] not in live]
    ExtractionRun.objects.filter(pk__in=ids, status=ExtractionRun.Status.QUEUED).update(enqueued_at=now, error="")
    return [str(pk) for pk in ids]


@transaction.atomic
def extraction_rewind(*, session: SessionContext, actor: Actor, reason: str) -> SessionContext:
    """Empty the extracted fields and move the cursor to the start, so the next run re-reads everything."""
    current = _locked(session)
    values = {name: EMPTY_CONTENT[name] for name in ("summary", "goal", "plan", "progress")}
    return _apply(session=session, expected_version=current.version, values=values, source=Revision.Source.RESET,
                  actor=actor, reason=_require_reason(reason), extra={"cursor_seq": 0})


@dataclass
class _Claim:
    decision: str  # "go", "done", "wait" (another run of the session is running), "later"
    run: ExtractionRun | None = None
    retry_in: float = 0.0
    session: SessionContext | None = None  # with "go": the row as read under the claim's lock
    lock_key: tuple[int, int] | None = None  # the session's attempt lock, while this attempt holds it
    lock_held: bool = False  # with "later": the attempt lock said the earlier attempt is alive

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


def _send_next_queued(session_pk: int) -> str | None:
    """A run that waited for this one is sent when this one ends (on commit)."""
    waiting = (ExtractionRun.objects.filter(session_id=session_pk, status=ExtractionRun.Status.QUEUED)
               .order_by("created_at").values_list("id", flat=True).first())
    if waiting is not None:
        _send_queued(waiting)
    return waiting


def _send_queued(run_pk: Any) -> None:
    ExtractionRun.objects.filter(pk=run_pk).update(enqueued_at=timezone.now())
    _send_on_commit(ExtractionRun._meta.pk.to_python(run_pk))


def _finish_applied(claim: _Claim, attempt: int, **values: Any) -> tuple[bool, Any]:
    """Mark the run succeeded if `attempt` still owns it, giving the attempt lock back (under the session's row
    lock, before the commit); (owned, the id of the session's next queued run or None)."""
    run = claim.run
    values = {"status": ExtractionRun.Status.SUCCEEDED, "finished_at": timezone.now(), "error": "", **values}
    fields = {name: ExtractionRun._meta.get_field(name) for name in values}
    columns = ", ".join(f"{field.column} = %s" for field in fields.values())
    key = claim.lock_key
    with connection.cursor() as cursor:
        cursor.execute(_SUCCEEDED_SQL.format(columns=columns,
                                             unlock=", (SELECT pg_advisory_unlock(%s, %s))" if key else ""),
                       [*(_db_value(fields[name], value) for name, value in values.items()),
                        _db_value(ExtractionRun._meta.pk, run.pk), ExtractionRun.Status.RUNNING, attempt,
                        run.session_id, ExtractionRun.Status.QUEUED, *(key or ())])
        row = cursor.fetchone()
    if row is None:
        return False, None
    claim.lock_key = None
    _set(run, values)  # type: ignore[arg-type]
    return True, row[0]


def _extraction_claim(run_id: str, extractor_name: str, model: str) -> _Claim:
    # Round trips matter here (a worker runs many of these at once): a claim of a queued run on a session with
    # no running run is two statements and the commit.
    run_pk = ExtractionRun._meta.pk.to_python(run_id)
    with transaction.atomic():
        # The session row lock is the per-session mutex for claims and applies (SQLite: the IMMEDIATE transaction).
        # The row is found through the run in the same statement and read whole: the extraction builds on it.
        session = next(iter(SessionContext.objects.raw(_SESSION_OF_RUN_SQL.format(for_update=_for_update()),
                                                       [_db_value(ExtractionRun._meta.pk, run_pk)])), None)
        if session is None:
            return _Claim("done")  # the run or its session was deleted meanwhile
        claim = (_claim_queued(run_pk, session, extractor_name, model)
                 or _claim_locked(run_pk, session, extractor_name, model))
        if claim.decision != "go":
            claim.release()
        return claim


def _db_value(field: Any, value: Any) -> Any:
    return field.get_db_prep_value(value, connection)


def _claim_queued(run_pk: Any, session: SessionContext, extractor_name: str, model: str) -> _Claim | None:
    """The claim of a queued run when the session has no running run; None when that is not the case."""
    key = extraction_lock_key(session.pk) if _liveness_locks() else None
    now = timezone.now()
    running, queued = ExtractionRun.Status.RUNNING, ExtractionRun.Status.QUEUED
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_QUEUED_SQL.format(lock=", (SELECT pg_try_advisory_lock(%s, %s))" if key else ""),
                       [running, connection.ops.adapt_datetimefield_value(now), extractor_name, model[:255],
                        _db_value(ExtractionRun._meta.pk, run_pk), queued,
                        settings.SESSIONCTX_EXTRACTION_MAX_ATTEMPTS, session.pk, running, *(key or ())])
        row = cursor.fetchone()
    if row is None:
        return None
    # Without the lock (held by an attempt past its lease that is somehow still alive) the lease rules hold,
    # as in the full decision.
    run = ExtractionRun(id=run_pk, session_id=session.pk, status=running, attempts=row[0], started_at=now,
                        extractor=extractor_name, model=model[:255])
    return _Claim("go", run, session=session, lock_key=key if key and row[1] else None)


def _claim_locked(run_pk: Any, session: SessionContext, extractor_name: str, model: str) -> _Claim:
    """The claim's decision, under the session's row lock."""
    # This run and the session's running ones, in one query.
    runs = (ExtractionRun.objects.filter(Q(pk=run_pk) | Q(session_id=session.pk, status=ExtractionRun.Status.RUNNING))
            .only("id", "session_id", "status", "attempts", "started_at").order_by("created_at"))
    key = extraction_lock_key(session.pk) if _liveness_locks() else None
    if key is not None:
        # Tried in the same statement: an uncorrelated sub-select runs once per query (an InitPlan), whatever
        # the number of rows, and not at all when there is none (then nothing is claimed either).
        runs = runs.annotate(got_lock=RawSQL("(SELECT pg_try_advisory_lock(%s, %s))", key))
    runs = list(runs)
    got_lock = bool(runs) and key is not None and runs[0].got_lock
    claim = _Claim("done", lock_key=key if got_lock else None)
    run = next((r for r in runs if r.pk == run_pk), None)
    if run is None:
        return claim
    claim.run = run
    if run.status in FINISHED:
        return claim  # a redelivery of finished work applies nothing
    now = timezone.now()
    lease = _extraction_lease()
    # With the lock, no earlier attempt on this session is alive: whatever runs it left are taken over now.
    # Without it (held elsewhere, or no such locks here), an attempt inside its lease may still be working.
    if not got_lock and run.status == ExtractionRun.Status.RUNNING and run.started_at and run.started_at > now - lease:
        # Look again once its lease is over rather than run the model twice.
        claim.decision, claim.retry_in = "later", (run.started_at + lease - now).total_seconds() + 1
        claim.lock_held = key is not None
        return claim
    for other in runs:
        if other.pk == run.pk:
            continue
        if not got_lock and other.started_at and other.started_at > now - lease:
            claim.decision = "wait"  # that run sends this one when it ends
            return claim
        _finish(other, ExtractionRun.Status.FAILED, error="Abandoned: its worker stopped before finishing.")
    if run.attempts >= settings.SESSIONCTX_EXTRACTION_MAX_ATTEMPTS:
        _finish(run, ExtractionRun.Status.FAILED,
                error=f"Gave up after {run.attempts} attempts: each one ended without finishing (worker lost?).")
        _send_next_queued(run.session_id)
        return claim
    values = {"status": ExtractionRun.Status.RUNNING, "attempts": run.attempts + 1, "started_at": now,
              "error": "", "extractor": extractor_name, "model": model[:255]}
    ExtractionRun.objects.filter(pk=run.pk).update(**values)
    _set(run, values)  # type: ignore[arg-type]
    claim.decision, claim.session = "go", session
    return claim


def _finish(run: ExtractionRun, status: str, *, attempt: int | None = None, **values: Any) -> bool:
    """Record how a run ended; with `attempt`, only if that attempt still owns the run (else False)."""
    values = {"status": status, "finished_at": timezone.now(), **values}
    rows = ExtractionRun.objects.filter(pk=run.pk)
    if attempt is not None:
        # The fence: a newer attempt took the run over (this one outlived its lease) and its result counts.
        rows = rows.filter(status=ExtractionRun.Status.RUNNING, attempts=attempt)
    if not rows.update(**values):
        return False
    _set(run, values)  # type: ignore[arg-type]
    return True


def _usage_fields(usage: Any, chunks: int) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "prompt_chars": usage.prompt_chars, "latency_ms": usage.latency_ms, "model_calls": usage.model_calls,
            "chunks": chunks}


def _extraction_end(claim: _Claim, attempt: int, status: str, **values: Any) -> bool:
    """Record how the attempt ended, unless a newer attempt took the run over meanwhile."""
    run = claim.run
    with transaction.atomic():
        SessionContext.objects.select_for_update().filter(pk=run.session_id).values_list("pk").first()
        claim.release()  # the attempt ends here either way
        if not _finish(run, status, attempt=attempt, **values):
            return False
        _send_next_queued(run.session_id)
    return True


@dataclass(frozen=True)
class _Base:
    version: int
    cursor_seq: int
    mode: str
    previous: dict[str, Any]


def _extraction_base(current: SessionContext) -> _Base:
    """The snapshot an extraction builds on; raises if it cannot be read as stored."""
    previous = current.snapshot()
    for name in ("summary", "goal"):
        if not isinstance(previous[name], str):
            raise TypeError(f"{name} is {type(previous[name]).__name__}, not text")
    for name in ("plan", "progress"):
        if not all(isinstance(step, str) for step in previous[name]):
            raise TypeError(f"{name} holds something other than text steps")
    return _Base(current.version, current.cursor_seq, current.mode, previous)


def extraction_run(*, run_id: str, extractor: Any = None) -> _Claim:
    """Do one queued run: claim it, ask the extractor outside any transaction, apply the result.

    Returns the claim; decision "later" asks the caller (the task) to try again in `retry_in` s.
    """
    from . import llm
    from .extractors import ExtractionError, Usage, get_extractor
    from .extractors.base import Deadline, PromptMessage, chunk_messages
    from .extractors.instructions import fields_for

    extractor = extractor or get_extractor()
    claim = _extraction_claim(run_id, extractor.name, extractor.model)
    if claim.decision != "go":
        return claim
    run = claim.run
    attempt = run.attempts
    usage = Usage()
    deadline = Deadline()
    chunks_used = 0
    row = claim.session  # read under the claim's lock; a recompute reads the snapshot again
    try:
        for _round in range(3):
            try:
                base = _extraction_base(row if row is not None else SessionContext.objects.get(pk=run.session_id))
                row = None
            except Exception as exc:  # noqa: BLE001 - any unreadable snapshot must stop the run
                logger.exception("run %s: previous snapshot unreadable", run.pk)
                _extraction_end(claim, attempt, ExtractionRun.Status.FAILED,
                                error=f"Could not read the previous snapshot ({exc}); nothing was changed.")
                return claim
            with connection.cursor() as cursor:
                cursor.execute(_UNSEEN_SQL, [run.session_id, base.cursor_seq])
                rows = cursor.fetchall()
            if not rows:
                _extraction_end(claim, attempt, ExtractionRun.Status.SKIPPED, from_version=base.version,
                                to_version=base.version, error="", **_usage_fields(usage, chunks_used))
                return claim
            messages = [PromptMessage(seq, role, content) for seq, role, content in rows]
            chunks = chunk_messages(messages, budget=settings.SESSIONCTX_PROMPT_BUDGET_CHARS, extractor=extractor,
                                    previous=base.previous, mode=base.mode)
            snapshot = dict(base.previous)
            consumed: list[list[PromptMessage]] = []
            for chunk in chunks[: settings.SESSIONCTX_MAX_CHUNKS_PER_RUN]:
                if consumed and not deadline.allows(2 * llm.worst_call_seconds()):
                    break  # keep what is done; a follow-up run takes the rest
                try:
                    result = extractor.extract(previous=snapshot, mode=base.mode, messages=chunk, deadline=deadline)
                except ExtractionError as exc:
                    usage.add(exc.usage)
                    _extraction_end(claim, attempt, ExtractionRun.Status.FAILED, error=exc.reason[:4000],
                                    from_version=base.version, first_seq=chunk[0].seq, last_seq=chunk[-1].seq,
                                    **_usage_fields(usage, chunks_used + len(consumed) + 1))
                    return claim
                usage.add(result.usage)
                snapshot.update(result.snapshot)
                consumed.append(chunk)
            chunks_used += len(consumed)
            try:
                changes = validate_content({name: snapshot[name] for name in fields_for(base.mode)})
            except InvalidInput as exc:
                _extraction_end(claim, attempt, ExtractionRun.Status.FAILED, from_version=base.version,
                                error=f"The extractor produced an invalid snapshot: {exc.details or exc.message}",
                                **_usage_fields(usage, chunks_used))
                return claim
            outcome = _extraction_apply(claim, attempt, base, changes, first_seq=consumed[0][0].seq,
                                        last_seq=consumed[-1][-1].seq, more=len(consumed) < len(chunks),
                                        model=extractor.model or extractor.name,
                                        usage=_usage_fields(usage, chunks_used))
            if outcome != "conflict":
                return claim
            logger.info("run %s: snapshot changed during the extraction; recomputing from the new one", run.pk)
        _extraction_end(claim, attempt, ExtractionRun.Status.FAILED, **_usage_fields(usage, chunks_used),
                        error="The snapshot kept changing during the extraction; the messages stay unseen.")
    except Exception as exc:  # noqa: BLE001 - the soft time limit and anything unforeseen end the run here
        logger.exception("run %s failed", run.pk)
        _extraction_end(claim, attempt, ExtractionRun.Status.FAILED, **_usage_fields(usage, chunks_used),
                        error=f"{type(exc).__name__}: {exc}"[:4000])
    finally:
        if claim.lock_key is not None:  # the end could not be recorded (the database went away?)
            try:
                claim.release()
            except Exception:  # noqa: BLE001 - closing the connection gives the lock back as well
                logger.warning("run %s: attempt lock not given back; closing the connection", run.pk)
                connection.close()
    return claim


def _extraction_apply(claim: _Claim, attempt: int, base: _Base, changes: dict[str, Any], *, first_seq: int,
                      last_seq: int, more: bool, model: str, usage: dict[str, Any]) -> str:
    """Write the extracted snapshot, its revision, the cursor and the run record together, or nothing."""
    run = claim.run
    with transaction.atomic():
        # Through raw(): the JSON and date columns need the fields' converters.
        session = next(iter(SessionContext.objects.raw(_APPLY_SESSION_SQL.format(for_update=_for_update()),
                                                       [run.session_id])), None)
        if session is None:
            claim.release()
            return "stale"
        if (session.version, session.cursor_seq, session.mode) != (base.version, base.cursor_seq, base.mode):
            owned = ExtractionRun.objects.filter(pk=run.pk, status=ExtractionRun.Status.RUNNING, attempts=attempt)
            if owned.exists():
                return "conflict"  # the attempt goes on (recomputes), lock and all
            claim.release()
            return "stale"
        # The row is locked and its version checked: written on as read, without snapshot_update's savepoint
        # and second read (3 of an extraction's 15 round trips). An error rolls all of this back.
        _write(session, values=changes, source=Revision.Source.EXTRACTION, actor=Actor.for_model(model),
               reason=f"Extraction run {run.pk}: messages {first_seq}-{last_seq}", extra={"cursor_seq": last_seq})
        # The run is finished only by the attempt that still owns it; the check comes last to save a query,
        # so a stale attempt (a newer one took the run over; its result counts) undoes its write here.
        owned, waiting = _finish_applied(claim, attempt, from_version=base.version, to_version=session.version,
                                         first_seq=first_seq, last_seq=last_seq, **usage)
        if not owned:
            claim.release()  # a session-level lock ignores the rollback: given back here, before the commit
            transaction.set_rollback(True)
            return "stale"
        if waiting is not None:
            _send_queued(waiting)
        elif more:
            follow_up = ExtractionRun.objects.create(session_id=session.pk, trigger="follow-up",
                                                     enqueued_at=timezone.now())
            _send_on_commit(follow_up.pk)
    return "applied"


# --- API keys ---------------------------------------------------------------------------------------


def api_key_hash(raw_key: str) -> str:
    import hashlib

    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def api_key_create(*, name: str, scopes: list[str], created_by: AbstractBaseUser | None = None) -> tuple[ApiKey, str]:
    """A new key; the raw key is returned once and only its hash is stored."""
    import secrets

    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("An API key needs a name of 1-100 characters.", details={"fields": {"name": "Invalid."}})
    scopes = sorted(set(scopes))
    if not scopes or not set(scopes) <= set(ApiKey.Scope.values):
        raise InvalidInput(f"Scopes must be among {', '.join(ApiKey.Scope.values)}.",
                           details={"fields": {"scopes": "Invalid."}})
    prefix = secrets.token_hex(4)
    raw_key = f"sck_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(name=name, prefix=prefix, key_hash=api_key_hash(raw_key), scopes=scopes,
                                created_by=created_by)
    return key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    # The cache's tombstone goes first and must succeed: once it is there no request can cache the key
    # as active again, so the key is refused at once when the update below commits.
    readcache.api_key_forget(api_key.key_hash)
    ApiKey.objects.filter(pk=api_key.pk).update(is_active=False, revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key
