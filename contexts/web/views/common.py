"""What the staff views share: the session of the person's project, rendering a page or its partial, and the
answers of a session page's actions (done, refused)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import csrf

from contexts import selectors
from contexts.exceptions import ApplicationError, InvalidInput, NotFound
from contexts.models import SessionContext
from contexts.services import Actor
from contexts.snapshot import validate_session_id

from .. import regions
from ..access import report, session_url
from ..forms import first_error


def session_or_404(request: HttpRequest, session_id: str) -> SessionContext:
    """The session of the project the person works in (staff_view's request.project); another project's is
    not found."""
    try:
        # An id no session can have (a NUL byte, which PostgreSQL refuses in a query) is simply not found.
        session = selectors.session_get(validate_session_id(session_id), project=request.project)
    except (InvalidInput, NotFound) as exc:
        raise Http404(exc.message) from None
    if request.method == "POST" and "live_since" in request.POST and not hasattr(request, "live_before"):
        # The session as the action found it: what changed before, the page had not shown (regions.action_result).
        request.live_before = regions.live_token(session)
    return session


def full_page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context.setdefault("waiting_count", selectors.handoff_waiting_count(project=request.project))
    return render(request, template, context, status=status)


def page_or_partial(request: HttpRequest, template: str, partial: str, context: dict[str, Any]) -> HttpResponse:
    # htmx restoring a page it has not kept (Back after hx-push-url) swaps the answer into <body>: the whole page.
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, f"{template}#{partial}", context)
    return full_page(request, template, context)


def detail_page(request: HttpRequest, session: SessionContext, status: int = 200, **extra: Any) -> HttpResponse:
    return full_page(request, regions.DETAIL, regions.detail_context(request, session, **extra), status=status)


def answer(request: HttpRequest, session: SessionContext, changed: Sequence[str], status: int,
           **extra: Any) -> HttpResponse:
    """The changed regions (htmx) or the whole page (a plain post), with the messages."""
    if request.htmx:
        return regions.action_result(request, session, changed, status, **extra)
    return detail_page(request, session, status, **extra)


def done(request: HttpRequest, session: SessionContext, changed: Sequence[str]) -> HttpResponse:
    """Success on a plain form post redirects (so reload does not repeat it); htmx gets the changed regions."""
    if not request.htmx:
        return redirect(session_url(request, session.session_id))
    return regions.action_result(request, session, changed)


def refused(request: HttpRequest, session_id: str, exc: ApplicationError, changed: Sequence[str]) -> HttpResponse:
    status = report(request, exc)
    if request.htmx and status not in (409, 412):
        return regions.flash_only(request, status)
    # A conflict means someone else changed the session: show its current state where the action would have.
    return answer(request, session_or_404(request, session_id), changed, status)


# Does what the action is for, as this person, with the form's cleaned data: the session as it now is and the
# message that says what was done.
Step = Callable[[SessionContext, dict[str, Any], Actor], tuple[SessionContext, str]]


def session_action(request: HttpRequest, session_id: str, form_class: type[forms.Form] | None, step: Step,
                   changed: Sequence[str]) -> HttpResponse:
    """A session page's action: validate the posted form, do the step; refused, the reason (and on a conflict the
    session as it is now), done, the message and the `changed` regions (or a redirect for a plain post)."""
    session = session_or_404(request, session_id)
    form = form_class(request.POST) if form_class is not None else None
    try:
        if form is not None and not form.is_valid():
            raise first_error(form)
        session, message = step(session, form.cleaned_data if form is not None else {}, Actor.for_user(request.user))
    except ApplicationError as exc:
        return refused(request, session_id, exc, changed)
    messages.success(request, message)
    return done(request, session, changed)


STALE_PAGE = ("This page is out of date (you may have signed in again in another tab), so that was not done: "
              "reload the page to continue. What you typed is still here; copy it first.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """settings.CSRF_FAILURE_VIEW: an htmx action says so in the page's message region and swaps nothing else, so
    the form keeps what was typed; a plain post gets Django's page."""
    if request.htmx:
        return regions.flash_only(request, 403, error=STALE_PAGE)
    return csrf.csrf_failure(request, reason=reason)
