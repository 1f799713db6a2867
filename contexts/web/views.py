"""Staff pages: one view per page or action; htmx requests get the page's partial, plain ones the full page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from contexts import selectors, services
from contexts.exceptions import ApplicationError, NotFound
from contexts.models import SessionContext, Status
from contexts.services import Actor

from .forms import ContextEditForm, NoteForm, OptionalNoteForm, ResetForm, RevertForm, SessionFilterForm, first_error

PAGE_SIZE = 25
VIEW_PERM = "contexts.view_sessioncontext"
HANDOFF_PERM = "contexts.handle_handoff"
EDIT_PERM = "contexts.edit_context"


# --- plumbing -------------------------------------------------------------------------------------


def report(request: HttpRequest, exc: ApplicationError) -> int:
    """The one place a service refusal becomes a page message; returns the status to answer with."""
    messages.error(request, exc.message)
    return exc.status


def staff_view(perm: str | None = None) -> Callable:
    """Login required (htmx: the browser is sent to the login page); a missing permission answers 403."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if request.htmx:
                    page = request.htmx.current_url_abs_path or "/"
                    return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}")
                return redirect_to_login(request.get_full_path())
            needed = [VIEW_PERM] + ([perm] if perm else [])
            if not request.user.has_perms(needed):
                what = {EDIT_PERM: "edit or reset contexts", HANDOFF_PERM: "handle handoffs"}.get(
                    perm or "", "view session contexts")
                text = f"You do not have permission to {what}."
                if request.htmx:
                    response = render(request, "contexts/_flash.html", {"error": text}, status=403)
                    return reswap(retarget(response, "#flash"), "innerHTML")
                raise PermissionDenied(text)
            response = view(request, *args, **kwargs)
            # Partial and full page share a URL: caches must key on the htmx header.
            patch_vary_headers(response, ["HX-Request"])
            return response

        return wrapped

    return decorate


def _session(session_id: str) -> SessionContext:
    try:
        return selectors.session_get(session_id)
    except NotFound as exc:
        raise Http404(exc.message) from None


def _full_page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context.setdefault("waiting_count", selectors.handoff_waiting_count())
    return render(request, template, context, status=status)


def _pick(request: HttpRequest, partial: str, page: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    if request.htmx:
        return render(request, partial, context, status=status)
    return _full_page(request, page, context, status=status)


# --- sessions list --------------------------------------------------------------------------------


@require_GET
@staff_view()
def session_list(request: HttpRequest) -> HttpResponse:
    form = SessionFilterForm(request.GET)
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    sort = data.get("sort") or "-updated"
    page = selectors.session_page(
        selectors.session_search(**form.filters()), sort=sort, after=data.get("after", ""),
        before=data.get("before", ""), size=PAGE_SIZE,
    )
    keep = {k: v for k, v in request.GET.items() if k not in ("after", "before") and v}

    def url(**params: str) -> str:
        merged = {**keep, **params}
        return reverse("sessions") + ("?" + urlencode(merged) if merged else "")

    context = {
        "form": form,
        "rows": [(s, selectors.plan_progress(s)) for s in page.rows],
        "sort": sort,
        "next_url": url(after=page.next_cursor) if page.next_cursor else "",
        "prev_url": url(before=page.prev_cursor) if page.prev_cursor else "",
        "first_url": url() if page.prev_cursor else "",
        "sort_urls": {s: url(sort=s) for s in ("-updated", "updated", "session_id")},
        "filtered": any(keep.get(k) for k in ("q", "status", "mode", "agent", "needs_human")),
        "ids_only_search": selectors.search_matches_ids_only(data.get("q", "")),
        "search_min_chars": selectors.SEARCH_MIN_CHARS,
        "poll_url": request.get_full_path(),
    }
    return _pick(request, "contexts/_session_table.html", "contexts/sessions.html", context)


# --- session detail -------------------------------------------------------------------------------


def _detail_context(request: HttpRequest, session: SessionContext, **extra: Any) -> dict[str, Any]:
    user = request.user
    context = {
        "session": session,
        "progress": selectors.plan_progress(session),
        "transcript": selectors.recent_messages(session, limit=200),
        "history": selectors.revision_history(session, limit=50),
        "runs": list(selectors.runs_for(session)[:20]),
        "events": list(selectors.handoff_events_for(session)[:200]),
        "can_edit": user.has_perm(EDIT_PERM),
        "can_handle": user.has_perm(HANDOFF_PERM),
        "is_mine": session.status == Status.HUMAN and session.assignee_id == user.pk,
    }
    context.update(extra)
    if context.get("editing") and "edit_form" not in context:
        context["edit_form"] = _edit_form_for(session)
    return context


def _edit_form_for(session: SessionContext) -> ContextEditForm:
    progress = selectors.plan_progress(session)
    return ContextEditForm(initial={
        "version": session.version, "summary": session.summary, "goal": session.goal,
        "other_progress": "\n".join(progress.other_progress),
    })


def _detail_response(request: HttpRequest, session: SessionContext, status: int = 200, **extra: Any) -> HttpResponse:
    return _pick(request, "contexts/_session_body.html", "contexts/session_detail.html",
                 _detail_context(request, session, **extra), status=status)


def _after_action(request: HttpRequest, session: SessionContext, status: int = 200, **extra: Any) -> HttpResponse:
    """Success on a plain form post redirects (so reload does not repeat it); otherwise re-render the body."""
    if status < 400 and not request.htmx:
        return redirect("session_detail", session_id=session.session_id)
    session.refresh_from_db()
    return _detail_response(request, session, status=status, **extra)


@require_GET
@staff_view()
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    return _detail_response(request, _session(session_id))


# --- handoff --------------------------------------------------------------------------------------


@require_GET
@staff_view()
def handoff_queue(request: HttpRequest) -> HttpResponse:
    return _pick(request, "contexts/_handoff_queue.html", "contexts/handoffs.html", _queue_context())


def _queue_context() -> dict[str, Any]:
    return {
        "waiting": list(selectors.handoff_queue().select_related("assignee")[:200]),
        "taken": list(selectors.sessions_with_people(limit=100)),
    }


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_take(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(session_id)
    from_queue = request.POST.get("from") == "queue"
    try:
        services.handoff_claim(session=session, actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        status = report(request, exc)
        if from_queue:
            return _pick(request, "contexts/_handoff_queue.html", "contexts/handoffs.html", _queue_context(),
                         status=status)
        return _after_action(request, session, status=status)
    messages.success(request, "You have taken this conversation; the agent waits until you hand it back.")
    if from_queue:
        target = reverse("session_detail", args=[session.session_id])
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    return _after_action(request, session)


def _note_action(request: HttpRequest, session_id: str, form_class: type, action: Any, done: str) -> HttpResponse:
    """A handoff action that takes a note: validate, call the service as this person, report, re-render."""
    session = _session(session_id)
    form = form_class(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        action(session=session, note=form.cleaned_data["note"], actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        return _after_action(request, session, status=report(request, exc))
    messages.success(request, done)
    return _after_action(request, session)


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_note(request: HttpRequest, session_id: str) -> HttpResponse:
    return _note_action(request, session_id, NoteForm, services.handoff_add_note, "Note added.")


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_release(request: HttpRequest, session_id: str) -> HttpResponse:
    return _note_action(request, session_id, OptionalNoteForm, services.handoff_release,
                        "Handed back to the agent, with a note in its context saying what you did.")


@require_POST
@staff_view(HANDOFF_PERM)
def session_close(request: HttpRequest, session_id: str) -> HttpResponse:
    return _note_action(request, session_id, OptionalNoteForm, services.session_close, "Conversation closed.")


# --- editing --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@staff_view(EDIT_PERM)
def session_edit(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(session_id)
    if request.method == "GET":
        return _detail_response(request, session, editing=True)
    form = ContextEditForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        services.snapshot_update(
            session=session, expected_version=form.cleaned_data["version"], changes=form.changes(request.POST),
            source="staff", actor=Actor.for_user(request.user), reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = report(request, exc)
        session.refresh_from_db()
        if status == 412:
            # Show the newer version to edit again; the rejected input is kept aside, not written.
            return _detail_response(request, session, status=status, editing=True, conflict=True,
                                    rejected=form.data)
        return _detail_response(request, session, status=status, editing=True, edit_form=form,
                                plan_rows=_posted_rows(request))
    messages.success(request, f"Saved as version {session.version}.")
    return _after_action(request, session)


def _posted_rows(request: HttpRequest) -> list[tuple[str, bool]]:
    plan, done = ContextEditForm.plan_from(request.POST)
    return [(step, step in done) for step in plan]


@require_POST
@staff_view(EDIT_PERM)
def session_revert(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(session_id)
    form = RevertForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        services.snapshot_revert(
            session=session, to_version=form.cleaned_data["to_version"],
            expected_version=form.cleaned_data["expected_version"], reason=form.cleaned_data["reason"],
            actor=Actor.for_user(request.user), source="staff",
        )
    except ApplicationError as exc:
        return _after_action(request, session, status=report(request, exc))
    messages.success(request, f"Restored version {form.cleaned_data['to_version']} as version {session.version}.")
    return _after_action(request, session)


@require_POST
@staff_view(EDIT_PERM)
def session_reset(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(session_id)
    form = ResetForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        services.snapshot_reset(session=session, reason=form.cleaned_data["reason"],
                                expected_version=form.cleaned_data["expected_version"],
                                actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        return _after_action(request, session, status=report(request, exc))
    messages.success(request, f"Context reset (version {session.version}); the history keeps every earlier version.")
    return _after_action(request, session)
