"""Staff-locked fields and proposals: the one place for their rules.

An editor locks goal, plan, summary or progress with a reason. While a field is locked an extraction leaves it
as it is and keeps what it would have written as the field's latest proposal; an API key's write that would
change it is refused with 423 and changes nothing; a person (staff page, admin) may still edit it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..exceptions import ApplicationError, InvalidInput, NotFound, StateConflict
from ..models import ExtractionRun, FieldLock, LockChange, Proposal, Revision, SessionContext
from ..snapshot import EXTRACTED_FIELDS, validate_reason, validate_snapshot
from . import snapshots
from .actors import Actor

LOCKABLE_FIELDS = EXTRACTED_FIELDS  # the fields a model writes; the handoff note is a person's own


class FieldLocked(ApplicationError):
    """A write would change a field an editor locked: nothing was written."""

    code = "locked"
    status = 423


def locked_fields(session: SessionContext) -> set[str]:
    return set(FieldLock.objects.filter(session_id=session.pk).values_list("field", flat=True))


@transaction.atomic
def locks_set(*, session: SessionContext, fields: list[str], reason: str, actor: Actor,
              shown: set[str] | None = None) -> list[FieldLock]:
    """Make `fields` exactly the locked ones (an empty list unlocks all), with an audit row; returns the locks.

    A reason is required whenever a field is newly locked; fields that stay locked keep their original reason.
    `shown`: the locks the person's page showed; if someone changed them since, nothing changes (409), so a
    stale page never silently unlocks a field another editor locked meanwhile. Locks that are already what is
    asked for are answered whatever `shown` says (nothing would be undone, and a retried call finds them so)."""
    unknown = sorted(set(fields) - set(LOCKABLE_FIELDS))
    if unknown:
        raise InvalidInput(f"Only {', '.join(LOCKABLE_FIELDS)} can be locked.",
                           details={"fields": {"fields": f"Not lockable: {', '.join(unknown)}."}})
    wanted = set(fields)
    current = snapshots.session_locked(session)  # serialises lock changes with the snapshot's writers
    before = locked_fields(current)
    # A reason for each field newly locked; unlocking some (or all) and keeping others needs none.
    reason = validate_reason(reason) if wanted - before else (reason or "").strip()
    if wanted == before:  # nothing would change, nothing undone: a retry of a call that landed answers the locks
        return list(FieldLock.objects.filter(session_id=current.pk))
    if shown is not None and shown != before:
        def names(fields: set[str]) -> str:
            return ", ".join(sorted(fields)) or "nothing"

        raise StateConflict(f"Someone changed the locks since this page showed them (locked now: {names(before)}; "
                            f"the page showed: {names(shown)}). Nothing was changed: look at them again.",
                            details={"locked": sorted(before), "shown": sorted(shown)})
    FieldLock.objects.filter(session_id=current.pk).exclude(field__in=wanted).delete()
    FieldLock.objects.bulk_create([
        FieldLock(session_id=current.pk, field=name, reason=reason, actor=actor.label, actor_user=actor.user)
        for name in sorted(wanted - before)
    ])
    # An unlocked field's proposal has nothing left to wait for: the next extraction writes it directly.
    Proposal.objects.filter(session_id=current.pk).exclude(field__in=wanted).delete()
    LockChange.objects.create(session_id=current.pk, fields=sorted(wanted), reason=reason, actor=actor.label,
                              actor_user=actor.user)
    return list(FieldLock.objects.filter(session_id=current.pk))


def locks_enforce(current: SessionContext, *, values: dict[str, Any], actor: Actor) -> None:
    """Refuse an API key's write that would change a locked field (the caller holds the row lock)."""
    if actor.api_key is None:
        return
    before = current.snapshot()
    touched = sorted(name for name in locked_fields(current) if name in values and values[name] != before[name])
    if touched:
        raise FieldLocked(f"{', '.join(touched)} {'is' if len(touched) == 1 else 'are'} locked by staff: "
                          "nothing was changed.", details={"locked_fields": touched})


def locks_withhold(current: SessionContext, *, values: dict[str, Any],
                   seen: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an extraction's values into what it may write and what it would change in locked fields.

    `seen`: the snapshot the extraction started from (default: the current one). A value it left as it saw it
    proposes nothing, even if a person changed the field meanwhile: the proposal would put their edit back."""
    locked = locked_fields(current)
    if not locked:
        return values, {}
    before = current.snapshot()
    seen = before if seen is None else seen
    allowed = {name: value for name, value in values.items() if name not in locked}
    withheld = {name: value for name, value in values.items()
                if name in locked and value != before[name] and value != seen.get(name)}
    return allowed, withheld


def proposals_record(current: SessionContext, *, withheld: dict[str, Any], run: ExtractionRun | None) -> None:
    """Keep each withheld value as its field's latest proposal (an earlier one is replaced)."""
    now = timezone.now()
    for name, value in withheld.items():
        Proposal.objects.update_or_create(session_id=current.pk, field=name,
                                          defaults={"value": value, "from_run": run, "created_at": now})


def _proposal(session_pk: int, field: str, proposed_at: datetime | None) -> Proposal | None:
    """The field's proposal (None when there is none), if it is still the one made at `proposed_at` (the one the
    person saw)."""
    proposal = Proposal.objects.filter(session_id=session_pk, field=field).first()
    if proposal is None and proposed_at is not None:
        raise StateConflict(f"The proposed {field} this page showed is no longer there: someone accepted or "
                            "dismissed it meanwhile (the history says which). Nothing was changed.",
                            details={"field": field})
    if proposal is not None and proposed_at is not None and proposal.created_at != proposed_at:
        raise StateConflict(f"A newer extraction replaced the proposed {field} since this page showed it: look at "
                            "the new one before you accept or dismiss it.",
                            details={"field": field, "proposed_at": proposal.created_at.isoformat()})
    return proposal


@transaction.atomic
def proposal_accept(*, session: SessionContext, field: str, expected_version: int, actor: Actor,
                    source: str = Revision.Source.STAFF, proposed_at: datetime | None = None) -> SessionContext:
    """Write the field's proposal exactly as proposed, as a revision by `actor`, if the snapshot is still at
    `expected_version` (and the proposal is still the one made at `proposed_at`, when given); the proposal is
    used up."""
    current = snapshots.session_locked(session)
    proposal = _proposal(current.pk, field, proposed_at)
    if proposal is None:
        raise NotFound(f"There is no proposal for {field!r}.", details={"field": field})
    validate_snapshot({field: proposal.value})
    updated = snapshots.snapshot_update(
        session=current, expected_version=expected_version, changes={field: proposal.value}, source=source,
        actor=actor, reason=f"Accepted the proposal for {field} from extraction run {proposal.from_run_id}")
    proposal.delete()
    return updated


@transaction.atomic
def proposal_dismiss(*, session: SessionContext, field: str, actor: Actor, proposed_at: datetime | None = None) -> None:
    """Drop the field's proposal (if it is still the one made at `proposed_at`, when given); the snapshot stays
    as it is."""
    snapshots.session_locked(session)
    proposal = _proposal(session.pk, field, proposed_at)
    if proposal is None:  # as for accept: saying "dismissed" would hide that someone acted on it first
        raise NotFound(f"There is no proposal for {field!r}.", details={"field": field})
    proposal.delete()
