"""How a snapshot changes: every writer (API, pages, admin, extraction, handoff, reset, revert) ends in
`snapshot_write`, the one versioned write: a conditional UPDATE on the version, the revision row, the
`context.updated` event and the read cache's invalidation, in the caller's transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import readcache
from ..exceptions import NotFound, VersionConflict
from ..models import Event, FieldLock, Revision, SessionContext
from ..snapshot import CONTENT_FIELDS, EMPTY_CONTENT, fields_for, validate_reason, validate_snapshot
from .actors import Actor
from .events import event_record
from .locks import locks_enforce


def session_locked(session: SessionContext) -> SessionContext:
    """The session's row, read afresh and locked until the transaction ends (SQLite: the IMMEDIATE
    transaction serialises writers instead)."""
    found = SessionContext.objects.select_for_update().filter(pk=session.pk).first()
    if found is None:
        raise NotFound(f"Session {session.session_id!r} does not exist.", details={"session_id": session.session_id})
    return found


def snapshot_write(current: SessionContext, *, values: dict[str, Any], source: str, actor: Actor,
                   reason: str = "", extra: dict[str, Any] | None = None) -> SessionContext:
    """Write `values` (snapshot fields, mode, status) and `extra` (other columns) on `current`, the row as the
    caller read it in its transaction, with a revision; returns that row as it now is.

    The UPDATE is conditional on the version read, so a writer that did not lock the row still cannot
    overwrite a change it did not see. No savepoint: an error rolls back the caller's whole transaction.
    """
    with transaction.atomic(savepoint=False):
        before = current.snapshot()
        after = {**before, **values}
        changed = [name for name in after if before.get(name) != after[name]]
        new_owner = (extra or {}).get("assignee", current.assignee_id)
        if not changed and getattr(new_owner, "pk", new_owner) != current.assignee_id:
            # Who owns the conversation is in the context's answer (and its ETag is the version): a new owner alone
            # (a take-over) is a new version too, or a client holding the old answer would be told 304.
            changed = ["assignee"]
        columns = {**values, **(extra or {}), "updated_at": timezone.now()}
        if changed:
            columns["version"] = current.version + 1
        elif not extra:
            return current  # nothing to write
        updated = SessionContext.objects.filter(pk=current.pk, version=current.version).update(**columns)
        if not updated:
            latest = SessionContext.objects.filter(pk=current.pk).values_list("version", flat=True).first()
            raise VersionConflict(expected=current.version, current=latest or 0)
        # updated_at is in the answer even without a new version
        readcache.context_changed(current.project_id, current.session_id)
        if changed:
            Revision.objects.create(session_id=current.pk, version=columns["version"], source=source,
                                    actor=actor.label, actor_user=actor.user, reason=reason, snapshot=after,
                                    changed_fields=changed)
            event_record(session=current, type=Event.Type.CONTEXT_UPDATED,
                         data={"version": columns["version"], "changed_fields": changed, "source": source,
                               "actor": actor.label})
        for name, value in columns.items():
            setattr(current, name, value)
        return current


@transaction.atomic
def _write_checked(*, session: SessionContext, expected_version: int | None, values: dict[str, Any], source: str,
                   actor: Actor, reason: str = "", extra: dict[str, Any] | None = None) -> SessionContext:
    """Lock the row, check the caller read the current version (None: whatever it is now), write."""
    current = session_locked(session)
    if expected_version is not None and current.version != expected_version:
        raise VersionConflict(expected=expected_version, current=current.version)
    locks_enforce(current, values=values, actor=actor)
    return snapshot_write(current, values=values, source=source, actor=actor, reason=reason, extra=extra)


def snapshot_update(*, session: SessionContext, expected_version: int, changes: dict[str, Any], source: str,
                    actor: Actor, reason: str = "", cursor_seq: int | None = None) -> SessionContext:
    """Change snapshot fields (a partial update) if nobody else changed the snapshot meanwhile.

    `cursor_seq`: the messages up to this one are taken into the snapshot (no extraction needs to read them).
    """
    return _write_checked(session=session, expected_version=expected_version, values=validate_snapshot(changes),
                          source=source, actor=actor, reason=reason,
                          extra=None if cursor_seq is None else {"cursor_seq": cursor_seq})


def snapshot_replace(*, session: SessionContext, expected_version: int, content: dict[str, Any], source: str,
                     actor: Actor, reason: str = "") -> SessionContext:
    """Replace the whole snapshot content: fields not given become empty."""
    return snapshot_update(session=session, expected_version=expected_version, changes={**EMPTY_CONTENT, **content},
                           source=source, actor=actor, reason=reason)


def snapshot_reset(*, session: SessionContext, reason: str, actor: Actor,
                   expected_version: int | None = None) -> SessionContext:
    """Empty the snapshot; the history keeps every earlier version."""
    return _write_checked(session=session, expected_version=expected_version, values=dict(EMPTY_CONTENT),
                          source=Revision.Source.RESET, actor=actor, reason=validate_reason(reason))


def snapshot_revert(*, session: SessionContext, to_version: int, expected_version: int, reason: str, actor: Actor,
                    source: str) -> SessionContext:
    """Restore the content as it was at `to_version`, as a new revision."""
    reason = validate_reason(reason)
    revision = Revision.objects.filter(session_id=session.pk, version=to_version).first()
    if revision is None:
        raise NotFound(f"Session {session.session_id!r} has no version {to_version}.", details={"version": to_version})
    content = {name: revision.snapshot.get(name, EMPTY_CONTENT[name]) for name in CONTENT_FIELDS}
    return _write_checked(session=session, expected_version=expected_version, values=content, source=source,
                          actor=actor, reason=f"Reverted to version {to_version}: {reason}")


def snapshot_rewind(*, session: SessionContext, actor: Actor, reason: str) -> SessionContext:
    """Empty the fields an extraction fills in the session's mode and move the extraction cursor to the start, so
    the next run re-reads all (a summary-mode session keeps the goal, plan and progress someone wrote, which its
    runs would never fill again). A field staff locked keeps its value (what the re-read would write to it becomes
    its proposal)."""
    locked = set(FieldLock.objects.filter(session_id=session.pk).values_list("field", flat=True))
    values = {name: EMPTY_CONTENT[name] for name in fields_for(session.mode) if name not in locked}
    return _write_checked(session=session, expected_version=None, values=values, source=Revision.Source.RESET,
                          actor=actor, reason=validate_reason(reason), extra={"cursor_seq": 0})
