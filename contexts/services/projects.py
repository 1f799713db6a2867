"""Projects and who works in them: created on first use by the commands and the admin, memberships with a role."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ..exceptions import InvalidInput
from ..models import Project, ProjectMembership, ProjectRole, project_slug_validator


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
