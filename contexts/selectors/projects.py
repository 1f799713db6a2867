"""Which projects a staff user may see, and with which role."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from ..exceptions import NotFound
from ..models import Project, ProjectMembership, ProjectRole, project_slug_validator


def is_project_slug(slug: str) -> bool:
    # What no project can be called is not looked up: PostgreSQL refuses a NUL in a query as an error (a 500).
    try:
        project_slug_validator(slug)
    except ValidationError:
        return False
    return True


def project_by_slug(slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first() if is_project_slug(slug) else None
    if project is None:
        raise NotFound(f"Project {slug!r} does not exist.", details={"project": slug})
    return project


def projects_for_user(user: AbstractBaseUser) -> QuerySet[Project]:
    """The projects a staff user works in, by slug: every project for a superuser, else their memberships."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.order_by("slug")
    return Project.objects.filter(memberships__user=user).order_by("slug")


def project_role(user: AbstractBaseUser, project: Project | int) -> str | None:
    """The user's role in the project (a superuser is an editor everywhere), None if not a member."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ProjectRole.EDITOR
    return (ProjectMembership.objects.filter(user=user, project=project)
            .values_list("role", flat=True).first())


def project_for_staff(user: AbstractBaseUser, slug: str | None = None) -> tuple[Project, str] | None:
    """The project a staff member works in, with their role there: the one named by `slug` if they are a member
    (a superuser: any), else their first by slug; None for someone who is in no project."""
    if not user.is_authenticated or not user.is_active:
        return None
    slug = slug if slug and is_project_slug(slug) else None
    if user.is_superuser:
        project = (Project.objects.filter(slug=slug).first() if slug else None) or Project.objects.first()
        return (project or Project.default(), ProjectRole.EDITOR)
    memberships = ProjectMembership.objects.filter(user=user).select_related("project").order_by("project__slug")
    chosen = (memberships.filter(project__slug=slug).first() if slug else None) or memberships.first()
    return (chosen.project, chosen.role) if chosen else None


def projects_editable_by(user: AbstractBaseUser) -> QuerySet[Project]:
    """The projects where a staff user is an editor (a superuser: every project): where the admin lets them change
    things, create keys and endpoints, erase."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.order_by("slug")
    return Project.objects.filter(memberships__user=user, memberships__role=ProjectRole.EDITOR).order_by("slug")
