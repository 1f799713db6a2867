"""Reads behind retention, erasure and export: which sessions a rule selects, and a session as one document.

Every selection is within one project (retention may look at all of them), so nothing crosses projects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, QuerySet, Sum

from ..exceptions import InvalidInput, NotFound
from ..models import (
    Event,
    ExtractionRun,
    FieldLock,
    HandoffEvent,
    LockChange,
    Message,
    Project,
    Proposal,
    Revision,
    SessionContext,
    WebhookDelivery,
)

EXPORT_FORMAT = "sessionctx.session/1"
# The columns of a session a document carries, in this order; the import writes exactly these back.
SESSION_FIELDS = ("session_id", "user_id", "agent_id", "team_id", "mode", "status", "summary", "goal", "plan",
                  "progress", "handoff_note", "handoff_reason", "handoff_requested_at", "version",
                  "last_message_seq", "cursor_seq", "created_at", "updated_at")
MESSAGE_FIELDS = ("seq", "role", "content", "idempotency_key", "created_at")
REVISION_FIELDS = ("version", "source", "actor", "reason", "snapshot", "changed_fields", "created_at")
# Settings, not history: an import gives them to a project it creates and never changes a project's own.
PROJECT_SETTINGS = ("retention_days", "daily_token_budget")
LOCK_FIELDS = ("field", "reason", "actor", "created_at")  # and actor_user, by username
PROPOSAL_FIELDS = ("field", "value", "created_at")  # not from_run: runs do not travel
HANDOFF_EVENT_FIELDS = ("kind", "actor", "note", "created_at")  # and actor_user, by username
# What a deletion counts, by the model it removes rows of; every answer names all of them, zeros included.
COUNTED = {
    SessionContext: "sessions", Message: "messages", Revision: "revisions", ExtractionRun: "runs",
    HandoffEvent: "handoff_events", Event: "events", WebhookDelivery: "webhook_deliveries",
    FieldLock: "locks", LockChange: "lock_changes", Proposal: "proposals",
}


def all_sessions(project: Project | int | None = None) -> QuerySet[SessionContext]:
    """Every session of `project`, or of every project when None."""
    sessions = SessionContext.objects.all()
    return sessions if project is None else sessions.filter(project=project)


def check_user_id(user_id: str) -> str:
    """A user id erasure or export may name: never blank, since sessions without a user have user_id ""."""
    # A lone surrogate: a command's argument in another encoding than UTF-8 (argv is read with surrogateescape).
    if (not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 255 or "\x00" in user_id
            or not user_id.isascii() and any("\ud800" <= ch <= "\udfff" for ch in user_id)):
        raise InvalidInput("user_id must be 1-255 characters of Unicode text, not blank, without null characters.",
                           details={"fields": {"user_id": "Invalid."}})
    return user_id


def sessions_of_user(user_id: str, *, project: Project | int) -> QuerySet[SessionContext]:
    """An end user's sessions in one project (user ids are the project's own: another project's `u-1` is
    somebody else)."""
    return all_sessions(project).filter(user_id=check_user_id(user_id))


def sessions_untouched_since(cutoff: datetime, *, project: Project | int | None = None) -> QuerySet[SessionContext]:
    """Sessions neither changed nor sent a message since `cutoff`.

    Posting messages moves last_message_seq with a plain UPDATE (updated_at stays), so a conversation that goes
    on without a new snapshot is still in use: its newest message counts too.
    """
    recent_message = Message.objects.filter(session=OuterRef("pk"), created_at__gte=cutoff)
    return all_sessions(project).filter(updated_at__lt=cutoff).exclude(Exists(recent_message))


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTED.values(), 0)


def ordered_counts(counts: dict[str, int]) -> dict[str, int]:
    """Counts in COUNTED's order (PostgreSQL's jsonb keeps keys in an order of its own), other kinds after."""
    return {**zero_counts(), **{k: v for k, v in counts.items() if k in COUNTED.values()},
            **{k: v for k, v in sorted(counts.items()) if k not in COUNTED.values()}}


def deletion_preview(sessions: QuerySet[SessionContext]) -> dict[str, int]:
    """The rows deleting these sessions would remove (a dry run's answer)."""
    counts = zero_counts()
    counts["sessions"] = sessions.count()
    for model, name in COUNTED.items():
        if model is SessionContext:
            continue
        lookup = "event__session__in" if model is WebhookDelivery else "session__in"
        counts[name] = model.objects.filter(**{lookup: sessions.values("pk")}).count()
    return counts


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def _row(obj, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: _time(v) if isinstance(v := getattr(obj, name), datetime) else v for name in fields}


@contextmanager
def _one_moment() -> Iterator[None]:
    """Reads that all see the database at one moment: a transaction, REPEATABLE READ on PostgreSQL (SQLite's
    transaction holds its lock); inside the caller's transaction, that one."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def session_document(session: SessionContext, *, staff_notes: bool = False) -> dict[str, Any]:
    """One session as export and import know it: its project's settings, the snapshot, every message, every
    revision, the staff locks and pending proposals, the handoff timeline, a runs summary. The staff's own notes
    in the timeline are for staff only: only an operator's export (`staff_notes`, export_sessions) carries them,
    never an API answer, which any agent's read key may ask for.

    People (assignee, staff authors, who locked) are named by username; content is never summarised or cut.
    Everything is read at one moment, the session's row included: a message or a version committed between two
    reads would give a document whose counters disagree with its rows, which the import refuses.
    """
    with _one_moment():
        found = SessionContext.objects.select_related("assignee", "project").filter(pk=session.pk).first()
        if found is None:
            raise NotFound(f"Session {session.session_id!r} does not exist.",
                           details={"session_id": session.session_id})
        return _document(found, staff_notes=staff_notes)


def _document(session: SessionContext, *, staff_notes: bool) -> dict[str, Any]:
    document = {"format": EXPORT_FORMAT, "project": session.project.slug, "project_name": session.project.name,
                "project_settings": _row(session.project, PROJECT_SETTINGS),
                "session": _row(session, SESSION_FIELDS)}
    # Not in SESSION_FIELDS (what must match for a re-import to be "the same session"): a setting, not history.
    document["session"]["update_policy"] = session.update_policy
    document["session"]["assignee"] = session.assignee.get_username() if session.assignee_id else None
    document["messages"] = [
        {**_row(m, MESSAGE_FIELDS), "author": m.author.get_username() if m.author_id else None}
        for m in Message.objects.filter(session=session).select_related("author").order_by("seq")
    ]
    document["revisions"] = [
        {**_row(r, REVISION_FIELDS), "actor_user": r.actor_user.get_username() if r.actor_user_id else None}
        for r in Revision.objects.filter(session=session).select_related("actor_user").order_by("version")
    ]
    document["locks"] = [
        {**_row(lock, LOCK_FIELDS), "actor_user": lock.actor_user.get_username() if lock.actor_user_id else None}
        for lock in FieldLock.objects.filter(session=session).select_related("actor_user").order_by("field")
    ]
    document["proposals"] = [_row(p, PROPOSAL_FIELDS)
                             for p in Proposal.objects.filter(session=session).order_by("field")]
    # The staff timeline (requested, taken, handed back, closed, the staff's own notes), oldest first.
    timeline = HandoffEvent.objects.filter(session=session).select_related("actor_user").order_by("created_at", "id")
    if not staff_notes:
        timeline = timeline.exclude(kind=HandoffEvent.Kind.NOTE)
    document["handoff_events"] = [
        {**_row(e, HANDOFF_EVENT_FIELDS), "actor_user": e.actor_user.get_username() if e.actor_user_id else None}
        for e in timeline
    ]
    runs = ExtractionRun.objects.filter(session=session)
    totals = runs.aggregate(prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"))
    document["runs"] = {
        "by_status": dict(runs.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n")),
        "prompt_tokens": totals["prompt_tokens"] or 0,
        "completion_tokens": totals["completion_tokens"] or 0,
    }
    return document


def session_documents(sessions: QuerySet[SessionContext], *, chunk: int = 200,
                      staff_notes: bool = False) -> Iterator[dict[str, Any]]:
    """session_document for each session, oldest first, read a chunk of ids at a time (no long-held cursor)."""
    last = 0
    while True:
        rows = list(sessions.filter(pk__gt=last).order_by("pk").values_list("pk", "session_id")[:chunk])
        for pk, session_id in rows:
            try:
                # session_document reads the row itself, at the moment it reads the rest.
                yield session_document(SessionContext(pk=pk, session_id=session_id), staff_notes=staff_notes)
            except NotFound:
                continue  # deleted while the export ran
        if len(rows) < chunk:
            return
        last = rows[-1][0]
