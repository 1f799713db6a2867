"""Reads shared by the API, the staff pages and the tasks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import F, Q, QuerySet
from django.utils.text import smart_split, unescape_string_literal

from .exceptions import NotFound
from .models import ApiKey, ExtractionRun, HandoffEvent, Message, Revision, SessionContext


def _no_session(session_id: str) -> NotFound:
    return NotFound(f"Session {session_id!r} does not exist.", details={"session_id": session_id})


def session_get(session_id: str) -> SessionContext:
    session = SessionContext.objects.filter(session_id=session_id).first()
    if session is None:
        raise _no_session(session_id)
    return session


class _OneRowLookup:
    """A one-row lookup by one value that the ORM builds and compiles once per database connection.

    On the read path, building and compiling a QuerySet cost about three times what running its query
    does (bench/profile_read.py); the SQL and the ORM's value converters are kept on the (per-thread)
    connection, so each call only executes. `build(value)` returns a `.values()` queryset of one row.
    """

    def __init__(self, name: str, build: Callable[[Any], QuerySet]) -> None:
        self.attr = f"sessionctx_lookup_{name}"
        self.build = build

    def __call__(self, value: Any) -> dict[str, Any] | None:
        conn = connections[DEFAULT_DB_ALIAS]
        prepared = getattr(conn, self.attr, None)
        if prepared is None:
            prepared = self._prepare(conn, value)
            setattr(conn, self.attr, prepared)
        sql, names, compiler, converters = prepared
        with conn.cursor() as cursor:
            cursor.execute(sql, [value])
            row = cursor.fetchone()
        if row is None:
            return None
        if converters:
            row = next(iter(compiler.apply_converters([row], converters)))
        return dict(zip(names, row, strict=True))

    def _prepare(self, conn, value: Any):
        query = self.build(value).query
        compiler = query.get_compiler(connection=conn)
        sql, params = compiler.as_sql()
        if list(params) != [value]:
            raise ValueError(f"{self.attr}: the query must have the looked-up value as its only parameter")
        names = [*query.extra_select, *query.values_select, *query.annotation_select]
        converters = compiler.get_converters([expression for expression, _, _ in compiler.select])
        return sql, names, compiler, converters


_context_lookups: dict[tuple[str, ...], _OneRowLookup] = {}


def context_get(session_id: str, fields: Iterable[str]) -> dict[str, Any]:
    """One session's columns as a dict, `assignee` as the username: the API's read path, no model instance."""
    fields = tuple(fields)
    lookup = _context_lookups.get(fields)
    if lookup is None:
        names = [name for name in fields if name != "assignee"]
        extra = {"assignee_username": F("assignee__username")} if "assignee" in fields else {}
        # [:1] rather than first(): the lookup is unique, so no ORDER BY.
        lookup = _context_lookups[fields] = _OneRowLookup(
            # Named by the fields themselves: two threads building lookups at once can never
            # give two different field lists the same per-connection slot.
            "context_" + "_".join(fields),
            lambda value: SessionContext.objects.filter(session_id=value).values(*names, **extra)[:1],
        )
    row = lookup(session_id)
    if row is None:
        raise _no_session(session_id)
    if "assignee_username" in row:
        row["assignee"] = row.pop("assignee_username")
    return row


_context_version = _OneRowLookup(
    "context_version", lambda value: SessionContext.objects.filter(session_id=value).values("version")[:1]
)


def context_version(session_id: str) -> int:
    """Only the snapshot version: enough to answer a conditional read with 304."""
    row = _context_version(session_id)
    if row is None:
        raise _no_session(session_id)
    return row["version"]


API_KEY_COLUMNS = ("id", "name", "prefix", "key_hash", "scopes", "is_active", "last_used_at")
_api_key_by_hash = _OneRowLookup(
    "api_key", lambda value: ApiKey.objects.filter(key_hash=value).values(*API_KEY_COLUMNS)[:1]
)


def api_key_by_hash(key_hash: str) -> ApiKey | None:
    """The key with this hash, with the columns a request needs (the rest load if touched), or None."""
    row = _api_key_by_hash(key_hash)
    return None if row is None else ApiKey.from_db(DEFAULT_DB_ALIAS, list(row), list(row.values()))


def session_list(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    mode: str | None = None,
    updated_after=None,
) -> QuerySet[SessionContext]:
    """Sessions, newest first, filtered on the indexed columns."""
    qs = SessionContext.objects.all()
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


def revisions_for(session: SessionContext) -> QuerySet[Revision]:
    return Revision.objects.filter(session=session).order_by("-version")


def messages_for(session: SessionContext, *, after_seq: int = 0) -> QuerySet[Message]:
    return Message.objects.filter(session=session, seq__gt=after_seq).order_by("seq")


def unseen_messages(session: SessionContext) -> QuerySet[Message]:
    """Messages no extraction has consumed yet."""
    return messages_for(session, after_seq=session.cursor_seq)


def runs_for(session: SessionContext) -> QuerySet[ExtractionRun]:
    return ExtractionRun.objects.filter(session=session).order_by("-created_at")


def run_get(run_id) -> ExtractionRun:
    run = ExtractionRun.objects.select_related("session").filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"Run {str(run_id)!r} does not exist.", details={"run_id": str(run_id)})
    return run


def handoff_events_for(session: SessionContext) -> QuerySet[HandoffEvent]:
    return HandoffEvent.objects.filter(session=session).select_related("actor_user").order_by("created_at", "id")


def handoff_queue() -> QuerySet[SessionContext]:
    """Sessions waiting for a person, oldest request first."""
    return SessionContext.objects.filter(status="handoff_requested").order_by("handoff_requested_at", "id")


# --- staff pages ------------------------------------------------------------------------------------

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


SEARCH_MIN_CHARS = 3  # trigram indexes need 3 characters; shorter searches match ids only


def session_search(
    *,
    q: str = "",
    status: str = "",
    mode: str = "",
    agent_id: str = "",
    needs_human: bool = False,
) -> QuerySet[SessionContext]:
    """Sessions matching the staff list's search box and filters (unordered)."""
    qs = SessionContext.objects.select_related("assignee")
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
        # together made the trigram index hand back every row to recheck (about 5 s at 1,000,000).
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


@dataclass
class PlanProgress:
    steps: list[tuple[str, bool]]
    other_progress: list[str]
    done: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


def plan_progress(session: SessionContext) -> PlanProgress:
    """The plan as (step, done) pairs: a step is done when the progress list names it."""
    done_items = {str(p).strip().casefold() for p in session.progress or []}
    steps = [(str(step), str(step).strip().casefold() in done_items) for step in session.plan or []]
    plan_keys = {str(step).strip().casefold() for step in session.plan or []}
    other = [str(p) for p in session.progress or [] if str(p).strip().casefold() not in plan_keys]
    return PlanProgress(steps, other, sum(1 for _, d in steps if d), len(steps))


@dataclass
class FieldDiff:
    name: str
    before: Any
    after: Any
    # (op, text): op is "same", "del", "ins" or "gap" (a display-only space between a deletion and an insertion)
    words: list[tuple[str, str]] = dc_field(default_factory=list)
    added: list[str] = dc_field(default_factory=list)
    removed: list[str] = dc_field(default_factory=list)
    reordered: bool = False


@dataclass
class RevisionWithDiff:
    revision: Revision
    diffs: list[FieldDiff]


_DIFF_FIELDS = ("status", "mode", "summary", "goal", "plan", "progress", "handoff_note")


_WORDS = re.compile(r"\w+|\s+|[^\w\s]")


def _word_diff(before: str, after: str) -> list[tuple[str, str]]:
    a, b = _WORDS.findall(before), _WORDS.findall(after)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if before and after and matcher.ratio() < 0.5:
        return [("del", before), ("gap", " "), ("ins", after)]  # mostly rewritten: word marks would be noise
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", "".join(a[i1:i2])))
            if j2 > j1:
                out.append(("gap", " "))  # display only: keeps a replaced word apart from its replacement
        if j2 > j1:
            out.append(("ins", "".join(b[j1:j2])))
    return out


def snapshot_diff(before: dict[str, Any], after: dict[str, Any]) -> list[FieldDiff]:
    """Field-by-field differences between two snapshots (word-level for text, items for lists)."""
    diffs = []
    for name in _DIFF_FIELDS:
        old, new = before.get(name), after.get(name)
        if name in ("plan", "progress"):
            old, new = list(old or []), list(new or [])
        elif name in ("summary", "goal", "handoff_note"):
            old, new = old or "", new or ""
        if old == new:
            continue
        d = FieldDiff(name, old, new)
        if isinstance(new, list):
            d.added = [x for x in new if x not in old]
            d.removed = [x for x in old if x not in new]
            d.reordered = not d.added and not d.removed
        elif name in ("summary", "goal", "handoff_note"):
            d.words = _word_diff(old, new)
        diffs.append(d)
    return diffs


def revision_history(session: SessionContext, *, limit: int = 50) -> list[RevisionWithDiff]:
    """The newest revisions, each with its diff against the version before it (one query)."""
    revisions = list(revisions_for(session)[: limit + 1])
    out = []
    for i, revision in enumerate(revisions[:limit]):
        previous = revisions[i + 1].snapshot if i + 1 < len(revisions) else None
        if previous is None and revision.version > 1:
            out.append(RevisionWithDiff(revision, []))  # its predecessor is beyond the shown history
            continue
        if previous is None:  # the first version: compare with the empty context it started from
            previous = {"status": revision.snapshot.get("status"), "mode": revision.snapshot.get("mode")}
        out.append(RevisionWithDiff(revision, snapshot_diff(previous, revision.snapshot)))
    return out


def recent_messages(session: SessionContext, *, limit: int = 200) -> list[Message]:
    """The last `limit` messages in order."""
    return list(Message.objects.filter(session=session).order_by("-seq")[:limit])[::-1]


def handoff_waiting_count() -> int:
    return SessionContext.objects.filter(status="handoff_requested").count()


def sessions_with_people(*, limit: int = 50) -> QuerySet[SessionContext]:
    """Conversations a person has taken, longest-held first."""
    return SessionContext.objects.filter(status="human").select_related("assignee").order_by("updated_at", "id")[
        :limit
    ]
