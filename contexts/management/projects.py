"""The `--project SLUG` option the commands share: which project a command works in (default: `default`)."""

from __future__ import annotations

from django.core.management.base import CommandError

from contexts.exceptions import ApplicationError
from contexts.models import Project
from contexts.selectors import project_by_slug
from contexts.services import project_get_or_create


def add_project_argument(parser, *, default: str | None = Project.DEFAULT_SLUG, what: str = "") -> None:
    parser.add_argument("--project", default=default, metavar="SLUG",
                        help=what or f"The project to work in (default: {default}).")


def project_option(slug: str | None, *, create: bool = False) -> Project | None:
    """The project named by --project (None when the option was left empty); an unknown slug is an error
    unless `create`."""
    if slug is None:
        return None
    try:
        return project_get_or_create(slug=slug)[0] if create else project_by_slug(slug)
    except ApplicationError as exc:
        raise CommandError(exc.message) from None
