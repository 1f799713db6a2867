"""The audit history as staff read it: revisions with their diffs, and a plan's progress."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from django.db.models import QuerySet

from ..models import Revision, SessionContext
from ..snapshot import CONTENT_FIELDS


def revisions_for(session: SessionContext) -> QuerySet[Revision]:
    return Revision.objects.filter(session=session).order_by("-version")


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

    @property
    def label(self) -> str:
        return FIELD_LABELS.get(self.name, self.name)

    @property
    def before_label(self) -> str:
        return VALUE_LABELS.get(self.name, {}).get(self.before, self.before)

    @property
    def after_label(self) -> str:
        return VALUE_LABELS.get(self.name, {}).get(self.after, self.after)


# How the history names fields and status values: as the desk talks, not as the code does.
FIELD_LABELS = {"status": "Status", "mode": "Mode", "summary": "Summary", "goal": "Goal", "plan": "Plan",
                "progress": "Progress", "handoff_note": "Handoff note"}
VALUE_LABELS = {
    "status": {"active": "With the agent", "handoff_requested": "Waiting for a person", "human": "With a person",
               "closed": "Closed"},
    "mode": {"summary": "Summary", "planning": "Planning"},
}


@dataclass
class RevisionWithDiff:
    revision: Revision
    diffs: list[FieldDiff]

    @property
    def restorable(self) -> bool:
        """Restoring brings back content: a revision that changed only the status (a take, a hand-back) has none
        of its own to bring back."""
        changed = set(self.revision.changed_fields or ()) or {d.name for d in self.diffs}
        return not changed or bool(changed & set(CONTENT_FIELDS))


def newer_revision(session: SessionContext, *, than_version: int) -> Revision | None:
    """The newest revision written after `than_version` (who moved the context on while someone edited it)."""
    return (Revision.objects.filter(session=session, version__gt=than_version).select_related("actor_user")
            .order_by("-version").first())


def reset_revision(session: SessionContext) -> Revision | None:
    """The current version's revision if it was a reset (the empty context then says who reset it)."""
    return (Revision.objects.filter(session=session, version=session.version, source=Revision.Source.RESET)
            .select_related("actor_user").first())


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
