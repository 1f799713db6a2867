"""A session's locked fields and pending proposals, as the API, the staff page and the admin show them."""

from __future__ import annotations

from ..models import FieldLock, Proposal, SessionContext


def locks_for(session: SessionContext) -> list[FieldLock]:
    return list(FieldLock.objects.filter(session_id=session.pk).order_by("field"))


def proposals_for(session: SessionContext) -> list[Proposal]:
    return list(Proposal.objects.filter(session_id=session.pk).order_by("field"))
