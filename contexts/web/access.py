"""Who may use the staff pages, and how a refusal reaches the person: one decorator, one message helper.

Also the two hooks django-axes calls for the login pages (settings.AXES_*): the client address and the lockout page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from axes.helpers import get_cool_off, get_failure_limit
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, reswap, retarget
from rest_framework.throttling import BaseThrottle

from contexts import selectors
from contexts.exceptions import ApplicationError
from contexts.models import ProjectRole

VIEW_PERM = "contexts.view_sessioncontext"
HANDOFF_PERM = "contexts.handle_handoff"
EDIT_PERM = "contexts.edit_context"
# The ids of the elements that poll (the session page's live check, the menu badge, the queue).
POLLS = frozenset({"live", "waiting-badge", "handoff-queue"})
# The staff session's key for the project a person is working in (the switcher sets it; ?project=SLUG on a link too).
PROJECT_SESSION_KEY = "sessionctx_project"
# The project a page was rendered in, sent by its htmx requests (base.html's hx-headers): its polls and actions stay
# in that project when the person switched to another in a second tab.
PROJECT_HEADER = "X-Sessionctx-Project"
# The same for a form posted without JavaScript: the session page's and the queue's forms carry it as a field.
PROJECT_FIELD = "page_project"
NO_PROJECT = "You are not a member of any project yet: ask an admin to add you to one."
SIGNED_OUT = "You are signed out, so this page stopped updating: sign in again to go on (your typing is still here)."
SIGNED_OUT_ACTION = ("You are signed out, so this was not sent: sign in again in another tab, then send it again "
                     "from here (what you typed is still here).")


def session_url(request: HttpRequest, session_id: str) -> str:
    """Where an action done on a session's page sends the browser: that session's page in the project the action
    was done in, named in the address when the person has since switched to another project in a second tab (the
    same session id can exist in both)."""
    url = reverse("session_detail", args=[session_id])
    project = getattr(request, "project", None)
    if project is not None and request.session.get(PROJECT_SESSION_KEY, project.slug) != project.slug:
        url += "?" + urlencode({"project": project.slug})
    return url


def report(request: HttpRequest, exc: ApplicationError) -> int:
    """The one place a service refusal becomes a page message; returns the status to answer with."""
    messages.error(request, exc.message)
    return exc.status


def role_allows(role: str | None, perm: str | None) -> bool:
    """What a project role lets a person do there: support views and handles handoffs, an editor also edits."""
    if role is None:
        return False
    return perm != EDIT_PERM or role == ProjectRole.EDITOR


def working_project(request: HttpRequest) -> tuple[Any, str | None]:
    """(project, role) the signed-in person works in now: the project of the page an htmx request or a posted
    form comes from, else `?project=SLUG` on a link (remembered), else the one chosen before, else their first.
    (None, None) for someone in no project, or not (any more) in the project the page named."""
    pinned = request.headers.get(PROJECT_HEADER) if request.htmx else request.POST.get(PROJECT_FIELD)
    wanted = pinned or request.GET.get("project") or request.session.get(PROJECT_SESSION_KEY)
    found = selectors.project_for_staff(request.user, wanted)
    if found is None or (pinned and found[0].slug != pinned):
        return None, None
    project, role = found
    linked = request.GET.get("project")
    if not pinned and linked == project.slug and request.session.get(PROJECT_SESSION_KEY) != project.slug:
        request.session[PROJECT_SESSION_KEY] = project.slug  # a link into another project: stay there
    elif not pinned and linked and linked != project.slug and not request.htmx:
        # A link into a project the person is not in (or no longer): say so rather than show another silently.
        messages.warning(request, f"You are not a member of project {linked[:100]!r}: this is {project.name}.")
    return project, role


def staff_view(perm: str | None = None, *, action: str | None = None) -> Callable:
    """Login required (htmx: the browser is sent to the login page); a missing permission, globally (the role
    groups) or in the project the person is working in (their membership's role), answers 403. The view finds
    that project as `request.project`: everything it shows or changes is within it. `action`: what the refusal
    says the person may not do, when the permission's own words would not name it."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if request.htmx and request.htmx.trigger in POLLS:
                    # Sent to the login page, the page would lose what the person is typing: stop polling, say so.
                    flash = render_to_string("contexts/base.html#flash", {"oob": True, "error": SIGNED_OUT}, request)
                    return reswap(HttpResponseStopPolling(flash), "none")
                if request.htmx and request.method == "POST":
                    # Sent to the login page, the reply or note being sent would be lost: keep the page, say so.
                    response = render(request, "contexts/_messages.html", {"error": SIGNED_OUT_ACTION}, status=403)
                    return reswap(retarget(response, "#flash"), "innerHTML")
                if request.htmx:
                    page = request.htmx.current_url_abs_path or "/"
                    return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}")
                return redirect_to_login(request.get_full_path())
            needed = [VIEW_PERM] + ([perm] if perm else [])
            project, role = working_project(request)
            allowed = request.user.has_perms(needed)
            if not allowed or project is None or not role_allows(role, perm):
                what = action or {EDIT_PERM: "edit or reset contexts", HANDOFF_PERM: "handle handoffs"}.get(
                    perm or "", "view session contexts")
                pinned = request.headers.get(PROJECT_HEADER) if request.htmx else request.POST.get(PROJECT_FIELD)
                if allowed and project is None and pinned:
                    text = f"You are not a member of project {pinned} (any more): reload the page."
                elif allowed and project is None:
                    text = NO_PROJECT
                elif allowed:  # allowed in general, not in this project (their role here is support): say where
                    text = f"You do not have permission to {what} in project {project.slug}."
                else:
                    text = f"You do not have permission to {what}."
                if request.htmx:
                    response = render(request, "contexts/_messages.html", {"error": text}, status=403)
                    return reswap(retarget(response, "#flash"), "innerHTML")
                raise PermissionDenied(text)
            request.project = project
            request.project_role = role
            response = view(request, *args, **kwargs)
            # Partial and full page share a URL: caches must key on the htmx header.
            patch_vary_headers(response, ["HX-Request"])
            return response

        return wrapped

    return decorate


def client_ip(request: HttpRequest) -> str | None:
    """The client's address by DRF's NUM_PROXIES rule, so the login lockout and the API throttle agree on it."""
    return BaseThrottle().get_ident(request)


def login_locked_out(request: HttpRequest, original_response: HttpResponse | None,
                     credentials: dict[str, Any] | None) -> HttpResponse:
    """The page for a login refused by django-axes: 429 with the wait, as the API answers a rate limit."""
    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    context = {"minutes": minutes, "failure_limit": get_failure_limit(request, credentials)}
    response = render(request, "axes/lockout.html", context, status=429)
    if cool_off:
        # Every refused attempt starts the cool-off again (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT).
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    add_never_cache_headers(response)
    return response
