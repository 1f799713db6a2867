"""A session's locked fields and pending proposals, as the API, the staff page and the admin show them."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, Subquery

from ..models import FieldLock, LockChange, Proposal, SessionContext
from .history import snapshot_diff


def locks_for(session: SessionContext) -> list[FieldLock]:
    return list(FieldLock.objects.filter(session_id=session.pk).select_related("actor_user").order_by("field"))


def proposals_for(session: SessionContext) -> list[Proposal]:
    return list(Proposal.objects.filter(session_id=session.pk).order_by("field"))


def lock_panel(session: SessionContext) -> dict[str, Any]:
    """What the session page's lock panel shows: the locks by field and each proposal as a diff from now."""
    current = session.snapshot()
    proposals = []
    for proposal in proposals_for(session):
        diffs = snapshot_diff({proposal.field: current.get(proposal.field)}, {proposal.field: proposal.value})
        proposals.append({"proposal": proposal, "diff": diffs[0] if diffs else None})
    return {"by_field": {lock.field: lock for lock in locks_for(session)}, "proposals": proposals}


def locks_token(session: SessionContext) -> str:
    """Two parts of the live token: the last lock change, and the proposals (which may come with no new version).
    One query, as the live check asks every 3 s."""
    changes = LockChange.objects.filter(session_id=OuterRef("pk")).order_by("-id").values("id")[:1]
    proposals = Proposal.objects.filter(session_id=OuterRef("pk")).order_by()
    row = SessionContext.objects.filter(pk=session.pk).values(
        last_change=Subquery(changes),
        n=Subquery(proposals.values("session_id").annotate(n=Count("id")).values("n")),
        last=Subquery(proposals.order_by("-created_at").values("created_at")[:1]),
    ).first() or {}
    stamp = int(row["last"].timestamp() * 1000) if row.get("last") else 0
    return f"{row.get('last_change') or 0}.{row.get('n') or 0}-{stamp}"
