"""Import of exported sessions (selectors.governance.session_document): whole sessions, exactly as exported.

A session is created with its versions, revisions and message seqs as they were; importing the same document
again changes nothing; a session that exists here with a different history is refused, never merged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from .. import readcache
from ..exceptions import ApplicationError
from ..models import Message, Mode, Project, Revision, SessionContext, Status
from ..selectors.governance import (
    EXPORT_FORMAT,
    MESSAGE_FIELDS,
    REVISION_FIELDS,
    SESSION_FIELDS,
    session_document,
)
from ..snapshot import validate_session_id
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
    return parsed


def _check(document: Any) -> str:
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ValueError(f"not a session document (format must be {EXPORT_FORMAT!r})")
    for part in ("session", "messages", "revisions"):
        if part not in document:
            raise ValueError(f"{part!r} is missing")
    session_id = document["session"]["session_id"]
    validate_session_id(session_id)
    if document["session"]["mode"] not in Mode.values or document["session"]["status"] not in Status.values:
        raise ValueError("unknown mode or status")
    return session_id


def _people(names: set[str]) -> dict[str, Any]:
    users = get_user_model().objects.filter(**{f"{get_user_model().USERNAME_FIELD}__in": names})
    return {user.get_username(): user for user in users}


def _create(document: dict[str, Any], project: Project) -> SessionContext:
    data = document["session"]
    people = _people(({data.get("assignee")} | {m.get("author") for m in document["messages"]}
                      | {r.get("actor_user") for r in document["revisions"]}) - {None})
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
    # Creation stamps every row with now; the exported times are put back as they were.
    for objs, rows in ((messages, document["messages"]), (revisions, document["revisions"])):
        for obj, row in zip(objs, rows, strict=True):
            obj.created_at = _when(row["created_at"])
    Message.objects.bulk_update(messages, ["created_at"], batch_size=500)
    Revision.objects.bulk_update(revisions, ["created_at"], batch_size=500)
    SessionContext.objects.filter(pk=session.pk).update(created_at=_when(data["created_at"]),
                                                        updated_at=_when(data["updated_at"]))
    # An entry cached for an earlier session of this id (deleted since) must not outlive it.
    readcache.context_changed(session.project_id, session.session_id)
    return session


def _target(document: dict[str, Any], project: Project | None) -> Project:
    """Where a document goes: the project given, else the one it was exported from (created here if need be)."""
    if project is not None:
        return project
    target, _ = project_get_or_create(slug=document.get("project") or Project.DEFAULT_SLUG,
                                      name=document.get("project_name") or "")
    return target


def session_import(*, document: Any, project: Project | None = None) -> ImportResult:
    """Create the session a document describes, exactly, in `project` (default: the project it was exported
    from); the same one already there is left alone; a different one is refused with a sentence that says why."""
    session_id = document.get("session", {}).get("session_id", "?") if isinstance(document, dict) else "?"
    try:
        session_id = _check(document)
        wanted = _history(document)
        target = _target(document, project)
        with transaction.atomic():
            existing = SessionContext.objects.filter(project=target, session_id=session_id).first()
            if existing is not None:
                if _history(session_document(existing)) == wanted:
                    return ImportResult(session_id, "unchanged")
                here = existing.version
                return ImportResult(session_id, "refused",
                                    f"exists here with a different history (here version {here} and "
                                    f"{existing.last_message_seq} messages, in the file version "
                                    f"{document['session']['version']} and {len(document['messages'])} messages); "
                                    f"not merged")
            _create(document, target)
    except IntegrityError as exc:
        return ImportResult(session_id, "refused", f"could not be stored as it is ({exc}); nothing of it was kept")
    except (KeyError, TypeError, ValueError, AttributeError, ValidationError, DataError, ApplicationError) as exc:
        detail = exc.message_dict if isinstance(exc, ValidationError) and hasattr(exc, "error_dict") else exc
        return ImportResult(session_id, "refused", f"not a valid session document: {detail}")
    logger.debug("session %s imported", session_id)  # an import of many sessions would bury the log
    return ImportResult(session_id, "created")
