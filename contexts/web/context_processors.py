"""What every staff page's frame shows: the project the person works in and the ones they may switch to."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from contexts import selectors


def projects(request: HttpRequest) -> dict:
    project = getattr(request, "project", None)  # set by staff_view
    if project is None:
        return {}
    # Lazy: htmx partials never show the switcher, so they never pay its query.
    return {"current_project": project,
            "staff_projects": SimpleLazyObject(lambda: list(selectors.projects_for_user(request.user)))}
