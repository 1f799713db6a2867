"""Import of exported sessions (selectors.governance.session_document): whole sessions, exactly as exported.

A session is created with its versions, revisions, message seqs, staff locks, pending proposals and handoff
timeline as they were;
importing the same document again changes nothing; a session that exists here with a different history is refused,
never merged. A project the import creates takes the exported project's settings; one already here keeps its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from .. import readcache
from ..exceptions import ApplicationError
from ..models import FieldLock, HandoffEvent, Message, Mode, Project, Proposal, Revision, SessionContext, Status
from ..selectors.governance import (
    EXPORT_FORMAT,
    HANDOFF_EVENT_FIELDS,
    LOCK_FIELDS,
    MESSAGE_FIELDS,
    PROJECT_SETTINGS,
    PROPOSAL_FIELDS,
    REVISION_FIELDS,
    SESSION_FIELDS,
    session_document,
)
from ..snapshot import CONTENT_FIELDS, STEP_FIELDS, validate_session_id, validate_snapshot
from .locks import LOCKABLE_FIELDS
from .projects import project_get_or_create

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportResult:
    session_id: str
    outcome: str  # "created", "unchanged" or "refused"
    message: str = ""


def _history(document: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for a session here to be the one in a document: content, versions, messages, revisions.

    People are left out: a username that does not exist here is imported as nobody, and that is not a new history.
    Locks and proposals are left out too: staff here may have changed them since, and that is not history either.
    """
    session = {k: document["session"][k] for k in SESSION_FIELDS}
    return {"session": session,
            "messages": [{k: m[k] for k in MESSAGE_FIELDS} for m in document["messages"]],
            "revisions": [{k: r[k] for k in REVISION_FIELDS} for r in document["revisions"]]}


def _when(value):
    if value is None:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"{value!r} is not an ISO 8601 time with a zone")
    try:
        # PostgreSQL would store a time that is past year 9999 (or before year 1) in UTC, and no read could load
        # the row again.
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside years 1-9999 in UTC") from None
    return parsed


# The columns' ranges on every database (PostgreSQL's integer and bigint), so a file that imports on one imports
# on all.
SETTING_MAX = {"retention_days": 2**31 - 1, "daily_token_budget": 2**63 - 1}


def _check_project_settings(settings: Any) -> None:
    if not isinstance(settings, dict):
        raise ValueError("project_settings must be an object")
    for name in PROJECT_SETTINGS:
        value = settings.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= SETTING_MAX[name]):
            raise ValueError(f"project_settings: {name} must be null or a whole number from 0 to "
                             f"{SETTING_MAX[name]}, not {value!r}")


def _check_rows(document: dict[str, Any], part: str, fields: tuple[str, ...]) -> None:
    """Locks and proposals: a list of objects with every field, at most one per lockable field, a time each."""
    rows = document.get(part, [])
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{part} must be a list of objects")
    for row in rows:
        missing = [name for name in fields if name not in row]
        if missing:
            raise ValueError(f"{part}: {', '.join(missing)} missing")
        if row["field"] not in LOCKABLE_FIELDS:
            raise ValueError(f"{part}: {row['field']!r} is not one of {', '.join(LOCKABLE_FIELDS)}")
        if _when(row["created_at"]) is None:
            raise ValueError(f"{part}: created_at is required")
    fields_named = [row["field"] for row in rows]
    if len(set(fields_named)) != len(fields_named):
        raise ValueError(f"{part}: a field appears more than once")


def _check_locks(document: dict[str, Any]) -> None:
    _check_rows(document, "locks", (*LOCK_FIELDS, "actor_user"))
    for lock in document.get("locks", []):
        if not isinstance(lock["reason"], str) or not lock["reason"].strip():
            raise ValueError(f"locks: the lock of {lock['field']} has no reason")
        if not isinstance(lock["actor"], str) or not lock["actor"].strip() or len(lock["actor"]) > 255:
            raise ValueError(f"locks: who locked {lock['field']} must be 1-255 characters")
        if lock["actor_user"] is not None and not isinstance(lock["actor_user"], str):
            raise ValueError(f"locks: actor_user of {lock['field']} must be a username or null")


def _check_proposals(document: dict[str, Any]) -> None:
    _check_rows(document, "proposals", PROPOSAL_FIELDS)
    for proposal in document.get("proposals", []):
        value, name = proposal["value"], proposal["field"]
        # Shapes only: bounds are checked when an editor accepts it, as for a proposal made here.
        fits = (isinstance(value, list) and all(isinstance(step, str) for step in value) if name in STEP_FIELDS
                else isinstance(value, str))
        if not fits:
            raise ValueError(f"proposals: the value for {name} must be "
                             f"{'a list of strings' if name in STEP_FIELDS else 'a string'}")


def _check_handoff_events(document: dict[str, Any]) -> None:
    events = document.get("handoff_events", [])
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise ValueError("'handoff_events' must be a list of objects")
    for n, event in enumerate(events, 1):
        missing = [key for key in (*HANDOFF_EVENT_FIELDS, "actor_user") if key not in event]
        if missing:
            raise ValueError(f"handoff_events: entry {n} lacks {', '.join(missing)}")
        if event["kind"] not in HandoffEvent.Kind.values:
            raise ValueError(f"handoff_events: entry {n} has the kind {event['kind']!r}, not one of "
                             f"{', '.join(HandoffEvent.Kind.values)}")
        if (not isinstance(event["actor"], str) or not event["actor"].strip() or len(event["actor"]) > 255
                or "\x00" in event["actor"]):
            raise ValueError(f"handoff_events: who acted in entry {n} must be 1-255 characters without NUL")
        if not isinstance(event["note"], str) or "\x00" in event["note"]:
            raise ValueError(f"handoff_events: the note of entry {n} must be text without NUL characters")
        user = event["actor_user"]
        if user is not None and (not isinstance(user, str) or "\x00" in user):
            raise ValueError(f"handoff_events: actor_user of entry {n} must be a username or null")
        if _when(event["created_at"]) is None:
            raise ValueError(f"handoff_events: entry {n} has no created_at")


def _numbers(rows: list[Any], key: str, part: str) -> list[int]:
    numbers = [row[key] for row in rows]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise ValueError(f"{part}: each {key} must be a whole number of at least 0")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{part}: a {key} appears twice")
    return numbers


def _check_revision(revision: Any) -> None:
    """A revision holds what a write here records: a snapshot whose texts are text (validate_snapshot reads a
    missing one as empty, a null too, which a revert or the history page could then not use), a known mode and
    status, and a known source."""
    if not isinstance(revision, dict) or not isinstance(revision.get("snapshot"), dict):
        version = revision.get("version") if isinstance(revision, dict) else None
        raise ValueError(f"revisions: the snapshot of version {version} must be an object")
    version, snapshot = revision.get("version"), revision["snapshot"]
    validate_snapshot({name: value for name, value in snapshot.items() if name in CONTENT_FIELDS})
    texts = [name for name in CONTENT_FIELDS if name not in STEP_FIELDS and name in snapshot]
    if any(not isinstance(snapshot[name], str) for name in texts):
        raise ValueError(f"revisions: the {', '.join(texts)} of version {version} must be text")
    if snapshot.get("mode", Mode.SUMMARY) not in Mode.values or snapshot.get("status", Status.ACTIVE) not in \
            Status.values:
        raise ValueError(f"revisions: version {version} has an unknown mode or status")
    if revision.get("source") not in Revision.Source.values:
        raise ValueError(f"revisions: version {version} has the source {revision.get('source')!r}, not one of "
                         f"{', '.join(Revision.Source.values)}")


def _check_consistent(document: dict[str, Any]) -> None:
    """The snapshot and each revision hold what a write here may hold, and the counters are past every row, so
    the session's next message or write does not collide with an imported one."""
    session, messages, revisions = document["session"], document["messages"], document["revisions"]
    if not isinstance(messages, list) or not isinstance(revisions, list):
        raise ValueError("'messages' and 'revisions' must be lists")
    validate_snapshot({name: session[name] for name in CONTENT_FIELDS})
    for revision in revisions:
        _check_revision(revision)
    seqs, versions = _numbers(messages, "seq", "messages"), _numbers(revisions, "version", "revisions")
    # What the API lets into a message, checked here for every database alike: PostgreSQL alone refused a NUL, and
    # neither refused a role that is none or content that is not text (bulk_create validates nothing).
    for message in messages:
        if message["role"] not in Message.Role.values:
            raise ValueError(f"messages: seq {message['seq']} has the role {message['role']!r}, not one of "
                             f"{', '.join(Message.Role.values)}")
        if not isinstance(message["content"], str) or "\x00" in message["content"]:
            raise ValueError(f"messages: the content of seq {message['seq']} must be text without NUL characters")
    last, cursor, version = session["last_message_seq"], session["cursor_seq"], session["version"]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (last, cursor, version)):
        raise ValueError("last_message_seq, cursor_seq and version must be whole numbers")
    if seqs and max(seqs) > last:
        raise ValueError(f"a message has seq {max(seqs)}, past last_message_seq {last}")
    if cursor > last:
        raise ValueError(f"cursor_seq {cursor} is past last_message_seq {last}")
    if versions and max(versions) > version:
        raise ValueError(f"a revision has version {max(versions)}, past the session's version {version}")


def _check(document: Any) -> str:
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ValueError(f"not a session document (format must be {EXPORT_FORMAT!r})")
    for part in ("session", "messages", "revisions"):
        if part not in document:
            raise ValueError(f"{part!r} is missing")
    if not isinstance(document["session"], dict):
        raise ValueError("'session' must be an object")
    session_id = document["session"]["session_id"]
    validate_session_id(session_id)
    if document["session"]["mode"] not in Mode.values or document["session"]["status"] not in Status.values:
        raise ValueError("unknown mode or status")
    # Documents exported before these parts existed have none of them: no settings, no locks, no proposals.
    if "project_settings" in document:
        _check_project_settings(document["project_settings"])
    _check_consistent(document)
    _check_locks(document)
    _check_proposals(document)
    _check_handoff_events(document)
    return session_id


def _people(names: set[str]) -> dict[str, Any]:
    users = get_user_model().objects.filter(**{f"{get_user_model().USERNAME_FIELD}__in": names})
    return {user.get_username(): user for user in users}


def _create(document: dict[str, Any], project: Project) -> SessionContext:
    data = document["session"]
    locks, proposals = document.get("locks", []), document.get("proposals", [])
    timeline = document.get("handoff_events", [])  # none in documents exported before it travelled
    people = _people(({data.get("assignee")} | {m.get("author") for m in document["messages"]}
                      | {r.get("actor_user") for r in document["revisions"]}
                      | {lock["actor_user"] for lock in locks} | {e["actor_user"] for e in timeline}) - {None})
    fields = {k: data[k] for k in SESSION_FIELDS if k not in ("created_at", "updated_at")}
    fields["handoff_requested_at"] = _when(fields["handoff_requested_at"])
    # update_policy came after format 1's first documents: one without it gets the installation's policy ("").
    session = SessionContext(**fields, update_policy=data.get("update_policy") or "", project=project,
                             assignee=people.get(data.get("assignee")))
    session.full_clean(validate_unique=False)
    session.save()
    messages = Message.objects.bulk_create(
        Message(session=session, author=people.get(m.get("author")),
                **{k: m[k] for k in MESSAGE_FIELDS if k != "created_at"}) for m in document["messages"])
    revisions = Revision.objects.bulk_create(
        Revision(session=session, actor_user=people.get(r.get("actor_user")),
                 **{k: r[k] for k in REVISION_FIELDS if k != "created_at"}) for r in document["revisions"])
    # Like a revision's, a lock by someone unknown here keeps its actor label and is nobody's.
    field_locks = FieldLock.objects.bulk_create(
        FieldLock(session=session, actor_user=people.get(lock["actor_user"]),
                  **{k: lock[k] for k in LOCK_FIELDS if k != "created_at"}) for lock in locks)
    Proposal.objects.bulk_create(
        Proposal(session=session, **{k: p[k] for k in PROPOSAL_FIELDS if k != "created_at"},
                 created_at=_when(p["created_at"])) for p in proposals)
    events = HandoffEvent.objects.bulk_create(
        HandoffEvent(session=session, actor_user=people.get(e["actor_user"]),
                     **{k: e[k] for k in HANDOFF_EVENT_FIELDS if k != "created_at"}) for e in timeline)
    # Creation stamps every row with now; the exported times are put back as they were.
    for objs, rows in ((messages, document["messages"]), (revisions, document["revisions"]), (field_locks, locks),
                       (events, timeline)):
        for obj, row in zip(objs, rows, strict=True):
            obj.created_at = _when(row["created_at"])
    Message.objects.bulk_update(messages, ["created_at"], batch_size=500)
    Revision.objects.bulk_update(revisions, ["created_at"], batch_size=500)
    FieldLock.objects.bulk_update(field_locks, ["created_at"])
    HandoffEvent.objects.bulk_update(events, ["created_at"], batch_size=500)
    SessionContext.objects.filter(pk=session.pk).update(created_at=_when(data["created_at"]),
                                                        updated_at=_when(data["updated_at"]))
    # An entry cached for an earlier session of this id (deleted since) must not outlive it.
    readcache.context_changed(session.project_id, session.session_id)
    return session


def _target(document: dict[str, Any], project: Project | None) -> Project:
    """Where a document goes: the project given, else the one it was exported from (created here if need be,
    with the exported settings; a project already here keeps its own)."""
    if project is not None:
        return project
    target, created = project_get_or_create(slug=document.get("project") or Project.DEFAULT_SLUG,
                                            name=document.get("project_name") or "")
    settings = document.get("project_settings") or {}
    if created and any(settings.get(name) is not None for name in PROJECT_SETTINGS):
        for name in PROJECT_SETTINGS:
            setattr(target, name, settings.get(name))
        target.save(update_fields=list(PROJECT_SETTINGS))
    return target


def _compared(existing: SessionContext, document: dict[str, Any], wanted: dict[str, Any]) -> ImportResult:
    """A document whose session is already here: unchanged when the histories are the same, else refused."""
    session_id = existing.session_id
    if _history(session_document(existing)) == wanted:
        return ImportResult(session_id, "unchanged")
    return ImportResult(session_id, "refused",
                        f"exists here with a different history (here version {existing.version} and "
                        f"{existing.last_message_seq} messages, in the file version "
                        f"{document['session']['version']} and {len(document['messages'])} messages); not merged")


def session_import(*, document: Any, project: Project | None = None) -> ImportResult:
    """Create the session a document describes, exactly, in `project` (default: the project it was exported
    from); the same one already there is left alone; a different one is refused with a sentence that says why."""
    data = document.get("session") if isinstance(document, dict) else None
    session_id = str(data.get("session_id", "?"))[:200] if isinstance(data, dict) else "?"
    try:
        session_id = _check(document)
        wanted = _history(document)
        for last_try in (False, True):
            try:
                with transaction.atomic():
                    # In the transaction: a project created for a session that is then refused is not kept either.
                    target = _target(document, project)
                    existing = SessionContext.objects.filter(project=target, session_id=session_id).first()
                    if existing is not None:
                        return _compared(existing, document, wanted)
                    _create(document, target)
                break
            except IntegrityError as exc:
                # Another import (or an agent's first post) created the session meanwhile: compared with that one
                # on the next try, as if it had been here first.
                if last_try or not SessionContext.objects.filter(session_id=session_id).exists():
                    return ImportResult(session_id, "refused",
                                        f"could not be stored as it is ({exc}); nothing of it was kept")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, ValidationError, DataError,
            ApplicationError) as exc:
        detail = exc.message_dict if isinstance(exc, ValidationError) and hasattr(exc, "error_dict") else exc
        return ImportResult(session_id, "refused", f"not a valid session document: {detail}")
    logger.debug("session %s imported", session_id)  # an import of many sessions would bury the log
    return ImportResult(session_id, "created")
