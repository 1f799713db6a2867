"""Sessions come into being on first use and go with everything they hold."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When

from .. import readcache
from ..exceptions import InvalidInput, NotFound
from ..extraction.policy import is_valid_policy
from ..models import Mode, Project, SessionContext
from ..snapshot import validate_session_id
from .actors import Actor

logger = logging.getLogger(__name__)

OWNER_FIELDS = ("user_id", "agent_id", "team_id")


def _check_owners(mode: str | None, owners: dict[str, str | None]) -> None:
    if mode is not None and mode not in Mode.values:
        raise InvalidInput(f"mode must be one of {', '.join(Mode.values)}", details={"fields": {"mode": "Invalid."}})
    for name, value in owners.items():
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise InvalidInput(f"{name} must be a string of at most 255 characters",
                               details={"fields": {name: "Invalid."}})


def session_get_or_create(*, session_id: str, project: Project | int | None = None, mode: str | None = None,
                          user_id: str | None = None, agent_id: str | None = None, team_id: str | None = None,
                          update_policy: str | None = None) -> tuple[SessionContext, bool]:
    """The session with this id in `project`, created (version 0, empty) if it does not exist yet. The API
    always names the key's project; commands and tests that name none work in the `default` project.

    Owners unknown when the session was first seen are filled in later; known ones are never overwritten.
    `update_policy` (given) is set, created or not: "" goes back to SESSIONCTX_UPDATE_POLICY.
    """
    validate_session_id(session_id)
    owners = {"user_id": user_id, "agent_id": agent_id, "team_id": team_id}
    _check_owners(mode, owners)
    if update_policy is not None and update_policy != "" and not is_valid_policy(update_policy):
        raise InvalidInput("update_policy must be every_turn, every_n_turns:N, idle:S or tokens:T (or empty)",
                           details={"fields": {"update_policy": "Invalid."}})
    defaults = {"mode": mode or settings.SESSIONCTX_DEFAULT_MODE, **{k: v or "" for k, v in owners.items()}}
    if update_policy is not None:
        defaults["update_policy"] = update_policy
    project_id = project_pk(project)
    try:
        session, created = SessionContext.objects.get_or_create(project_id=project_id, session_id=session_id,
                                                                defaults=defaults)
    except IntegrityError:
        # Two first posts raced; the other one created it.
        session, created = SessionContext.objects.get(project_id=project_id, session_id=session_id), False
    missing = {k: v for k, v in owners.items() if v and not getattr(session, k)}
    if update_policy is not None and session.update_policy != update_policy:
        missing["update_policy"] = update_policy
    if created or missing:
        # One transaction, so the cached answer is dropped once the owners are written (on commit), not before:
        # a read landing in between would cache the old owners. A new session: an entry cached for an earlier
        # session of this id (deleted since) must not outlive it.
        with transaction.atomic():
            if missing:
                # Each owner only where it is still unknown: another post may have filled it in since we read it.
                SessionContext.objects.filter(pk=session.pk).update(**{
                    name: value if name == "update_policy"
                    else Case(When(**{name: ""}, then=Value(value)), default=F(name))
                    for name, value in missing.items()})
                found = SessionContext.objects.filter(pk=session.pk).first()
                if found is None:  # erased since it was read
                    raise NotFound(f"Session {session_id!r} does not exist.", details={"session_id": session_id})
                session = found
            readcache.context_changed(project_id, session_id)
    return session, created


def project_pk(project: Project | int | None) -> int:
    """The primary key of `project`, or of the `default` project when None."""
    if project is None:
        return Project.default().pk
    return project if isinstance(project, int) else project.pk


def session_update_policy_set(*, session: SessionContext, update_policy: str) -> SessionContext:
    """Set when posted turns update this session's context; "" goes back to SESSIONCTX_UPDATE_POLICY."""
    session, _ = session_get_or_create(session_id=session.session_id, project=session.project_id,
                                       update_policy=update_policy)
    return session


@transaction.atomic
def session_delete(*, session: SessionContext, actor: Actor) -> None:
    """Erase a session with its messages, revisions, runs and handoff events (right to erasure), recorded in
    Data deletions like a user's erasure: the counts and a SHA-256 of the session id, never content."""
    from .governance import session_erase  # governance deletes through the same batches for every kind

    logger.info("session %s deleted by %s", session.session_id, actor.label)
    session_erase(session=session, actor=actor)
