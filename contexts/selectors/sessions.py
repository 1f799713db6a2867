"""Reads of sessions shared by the API and the staff pages: one session, lists, search, the keyset pager.

Every read is within one project (`project`: a Project or its primary key): an API key's, or the one a staff
member is working in. A session of another project is not found, exactly like one that does not exist."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet
from django.utils.text import smart_split, unescape_string_literal

from ..exceptions import NotFound
from ..models import Project, SessionContext, Status

ProjectRef = Project | int


def _no_session(session_id: str) -> NotFound:
    return NotFound(f"Session {session_id!r} does not exist.", details={"session_id": session_id})


def session_get(session_id: str, *, project: ProjectRef) -> SessionContext:
    session = SessionContext.objects.filter(project=project, session_id=session_id).first()
    if session is None:
        raise _no_session(session_id)
    return session


def context_get(session_id: str, fields: Iterable[str], *, project: ProjectRef) -> dict[str, Any]:
    """One session's columns as a dict, `assignee` as the username: what the API's answers are built from."""
    fields = tuple(fields)
    names = [name for name in fields if name != "assignee"]
    extra = {"assignee_username": F("assignee__username")} if "assignee" in fields else {}
    # [:1] rather than first(): the lookup is unique, so no ORDER BY.
    rows = list(SessionContext.objects.filter(project=project, session_id=session_id).values(*names, **extra)[:1])
    if not rows:
        raise _no_session(session_id)
    row = rows[0]
    if "assignee_username" in row:
        row["assignee"] = row.pop("assignee_username")
    return row


def context_version(session_id: str, *, project: ProjectRef) -> int:
    """Only the snapshot version: enough to answer a conditional read with 304."""
    version = (SessionContext.objects.filter(project=project, session_id=session_id)
               .values_list("version", flat=True).first())
    if version is None:
        raise _no_session(session_id)
    return version


def session_list(
    *,
    project: ProjectRef,
    user_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    mode: str | None = None,
    updated_after=None,
) -> QuerySet[SessionContext]:
    """A project's sessions, newest first, filtered on the indexed columns."""
    qs = SessionContext.objects.filter(project=project)
    if user_id:
        qs = qs.filter(user_id=user_id)
    if agent_id:
        qs = qs.filter(agent_id=agent_id)
    if status:
        qs = qs.filter(status=status)
    if mode:
        qs = qs.filter(mode=mode)
    if updated_after is not None:
        qs = qs.filter(updated_at__gt=updated_after)
    return qs.order_by("-updated_at", "-id")


def handoff_queue(*, project: ProjectRef) -> QuerySet[SessionContext]:
    """Sessions waiting for a person, oldest request first."""
    return (SessionContext.objects.filter(project=project, status=Status.HANDOFF_REQUESTED)
            .order_by("handoff_requested_at", "id"))


NEEDS_HUMAN_STATUSES = ("handoff_requested", "human")
SESSION_SORTS = ("-updated", "updated", "session_id")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SessionPage:
    rows: list[SessionContext]
    next_cursor: str | None
    prev_cursor: str | None


def _encode_cursor(session: SessionContext, sort: str) -> str:
    if sort == "session_id":
        return session.session_id
    micros = (session.updated_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{session.pk}"


def _keyset(sort: str, cursor: str, *, forward: bool) -> Q:
    """Rows strictly after (forward) or before the cursor in the page order; raises ValueError if malformed."""
    descending = sort == "-updated"
    later = forward != descending  # in the page order, "after" means greater values unless sorted descending
    if sort == "session_id":
        return Q(session_id__gt=cursor) if later else Q(session_id__lt=cursor)
    micros, pk = (int(part) for part in cursor.split(".", 1))
    when = _EPOCH + timedelta(microseconds=micros)
    if later:
        return Q(updated_at__gt=when) | Q(updated_at=when, id__gt=pk)
    return Q(updated_at__lt=when) | Q(updated_at=when, id__lt=pk)


def cursor_is_valid(cursor: str, *, sort: str = "-updated") -> bool:
    """A cursor session_page made (a mangled one there just starts from the first page)."""
    try:
        _keyset(sort, cursor, forward=True)
    except (ValueError, OverflowError):
        return False
    return True


SEARCH_MIN_CHARS = 3  # trigram indexes need 3 characters; shorter searches match ids only


def session_search(
    *,
    project: ProjectRef,
    q: str = "",
    status: str = "",
    mode: str = "",
    agent_id: str = "",
    needs_human: bool = False,
) -> QuerySet[SessionContext]:
    """Sessions matching the staff list's search box and filters (unordered)."""
    qs = SessionContext.objects.filter(project=project).select_related("assignee")
    if status:
        qs = qs.filter(status=status)
    elif needs_human:
        qs = qs.filter(status__in=NEEDS_HUMAN_STATUSES)
    if mode:
        qs = qs.filter(mode=mode)
    if agent_id:
        qs = qs.filter(agent_id=agent_id)
    q = q.strip()
    if search_matches_ids_only(q):
        # Too short for trigrams (and it would match most rows): ids only, each served by a B-tree index.
        qs = qs.filter(Q(session_id=q) | Q(user_id=q) | Q(session_id__startswith=q))
    elif q:
        # Every word must appear in one of the columns, as in the admin's search. Each icontains is
        # UPPER(col) LIKE UPPER('%word%'), served on PostgreSQL by a trigram index on that expression
        # (migration 0004), so a rare word is a BitmapOr and a common one a walk of the updated_at index;
        # the planner has statistics per word. A whole phrase would not: words common apart but never
        # together made the trigram index hand back every row to recheck (slow on a large table).
        for term in search_terms(q):
            qs = qs.filter(Q(session_id__icontains=term) | Q(user_id__icontains=term) | Q(summary__icontains=term)
                           | Q(goal__icontains=term))
    return qs


def search_matches_ids_only(q: str) -> bool:
    """True when no word of a search has SEARCH_MIN_CHARS characters: it then matches session and user ids only."""
    return bool(q.strip()) and not any(len(term) >= SEARCH_MIN_CHARS for term in search_terms(q))


def search_terms(q: str) -> list[str]:
    """The words of a search; "quoted words" stay one term."""
    terms = []
    for bit in smart_split(q):
        if len(bit) > 1 and bit[0] in "\"'" and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit.strip():
            terms.append(bit.strip())
    return terms


def session_page(
    qs: QuerySet[SessionContext], *, sort: str = "-updated", after: str = "", before: str = "", size: int = 25
) -> SessionPage:
    """One page by keyset on (updated_at, id) or session_id: no OFFSET and no COUNT(*), so fast at any depth."""
    if sort not in SESSION_SORTS:
        sort = "-updated"
    order = {"-updated": ["-updated_at", "-id"], "updated": ["updated_at", "id"], "session_id": ["session_id"]}[sort]
    reverse = [f[1:] if f.startswith("-") else f"-{f}" for f in order]
    try:
        if before:
            rows = list(qs.filter(_keyset(sort, before, forward=False)).order_by(*reverse)[: size + 1])
            has_more = len(rows) > size
            rows = rows[:size][::-1]
            if not has_more:
                # Reached the start: show a full first page rather than a short one.
                return session_page(qs, sort=sort, size=size)
            return SessionPage(rows, _encode_cursor(rows[-1], sort) if rows else None,
                               _encode_cursor(rows[0], sort) if rows else None)
        if after:
            qs = qs.filter(_keyset(sort, after, forward=True))
    except (ValueError, OverflowError):
        after = ""  # a mangled cursor in a bookmark: start from the first page
    rows = list(qs.order_by(*order)[: size + 1])
    has_next = len(rows) > size
    rows = rows[:size]
    return SessionPage(
        rows,
        _encode_cursor(rows[-1], sort) if has_next else None,
        _encode_cursor(rows[0], sort) if after and rows else None,
    )


def handoff_waiting_count(*, project: ProjectRef) -> int:
    return SessionContext.objects.filter(project=project, status=Status.HANDOFF_REQUESTED).count()


def sessions_with_people(*, project: ProjectRef, limit: int | None = 50,
                         assignee: Any = None) -> QuerySet[SessionContext]:
    """Conversations a person has taken (by `assignee` alone, if given), longest-held first; all when `limit` is
    None."""
    taken = SessionContext.objects.filter(project=project, status=Status.HUMAN)
    if assignee is not None:
        taken = taken.filter(assignee=assignee)
    taken = taken.select_related("assignee").order_by("updated_at", "id")
    return taken if limit is None else taken[:limit]


def handoff_desk_state(*, project: ProjectRef) -> tuple[int, int, float]:
    """(waiting, with a person, newest change among them): one query that changes whenever the queue would.

    Every status change writes updated_at, so a conversation that joins, leaves or changes hands moves a count
    or the newest time."""
    row = SessionContext.objects.filter(project=project, status__in=NEEDS_HUMAN_STATUSES).aggregate(
        waiting=Count("id", filter=Q(status=Status.HANDOFF_REQUESTED)),
        taken=Count("id", filter=Q(status=Status.HUMAN)), newest=Max("updated_at"),
    )
    return row["waiting"], row["taken"], row["newest"].timestamp() if row["newest"] else 0.0
