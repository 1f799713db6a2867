"""Projects and who works in them: created on first use by the commands and the admin, memberships with a role."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ..exceptions import InvalidInput, StateConflict
from ..models import Project, ProjectMembership, ProjectRole, project_slug_validator
from .api_keys import api_key_revoke


def project_get_or_create(*, slug: str, name: str = "") -> tuple[Project, bool]:
    """The project with this slug, created (named `name`, else the slug) if there is none yet."""
    slug = (slug or "").strip()
    try:
        project_slug_validator(slug)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], details={"fields": {"project": "Invalid."}}) from None
    try:
        with transaction.atomic():
            return Project.objects.get_or_create(slug=slug, defaults={"name": (name or slug)[:100]})
    except IntegrityError:  # created by someone else meanwhile
        return Project.objects.get(slug=slug), False


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> ProjectMembership:
    """Make `user` a member of `project` with `role` (support or editor), or change their role there."""
    if role not in ProjectRole.values:
        raise InvalidInput(f"role must be one of {', '.join(ProjectRole.values)}",
                           details={"fields": {"role": "Invalid."}})
    membership, _ = ProjectMembership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete a project made by mistake, with its keys, endpoints and memberships. Refused for the default project
    (keys and commands that name none use it) and for one with sessions (erase those first, with their audit
    record). Its keys are revoked first, so that no process's cache still lets one in."""
    if project.slug == Project.DEFAULT_SLUG:
        raise StateConflict("The default project stays: keys and commands that name no project use it.")
    if project.sessions.exists():
        raise StateConflict("This project has sessions: erase them first (each erasure keeps an audit record).")
    for key in project.api_keys.filter(is_active=True):
        api_key_revoke(api_key=key)
    project.delete()

