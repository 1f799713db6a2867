"""Staff pages: one view per page or action; htmx requests get the partial they target, plain ones the page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views import csrf
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from contexts import selectors, services
from contexts.exceptions import ApplicationError, InvalidInput, NotFound
from contexts.models import SessionContext
from contexts.services import Actor
from contexts.services.locks import locks_set
from contexts.services.locks import proposal_accept as locks_proposal_accept
from contexts.services.locks import proposal_dismiss as locks_proposal_dismiss
from contexts.snapshot import validate_session_id

from . import regions
from .access import EDIT_PERM, HANDOFF_PERM, PROJECT_SESSION_KEY, report, staff_view
from .forms import (
    ContextEditForm,
    LocksForm,
    NoteForm,
    OptionalNoteForm,
    ProposalForm,
    ReplyForm,
    ResetForm,
    RevertForm,
    SessionFilterForm,
    first_error,
)

PAGE_SIZE = 25
QUEUE_ROWS = 200
SESSIONS = "contexts/sessions.html"
QUEUE = "contexts/handoffs.html"


def _session(request: HttpRequest, session_id: str) -> SessionContext:
    """The session of the project the person works in (staff_view's request.project); another project's is
    not found."""
    try:
        # An id no session can have (a NUL byte, which PostgreSQL refuses in a query) is simply not found.
        return selectors.session_get(validate_session_id(session_id), project=request.project)
    except (InvalidInput, NotFound) as exc:
        raise Http404(exc.message) from None


def _full_page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context.setdefault("waiting_count", selectors.handoff_waiting_count(project=request.project))
    return render(request, template, context, status=status)


def _page(request: HttpRequest, template: str, partial: str, context: dict[str, Any]) -> HttpResponse:
    if request.htmx:
        return render(request, f"{template}#{partial}", context)
    return _full_page(request, template, context)


# --- sessions list --------------------------------------------------------------------------------


@require_GET
@staff_view()
def session_list(request: HttpRequest) -> HttpResponse:
    form = SessionFilterForm(request.GET)
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    sort = data.get("sort") or "-updated"
    page = selectors.session_page(
        selectors.session_search(project=request.project, **form.filters()), sort=sort, after=data.get("after", ""),
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
    return _page(request, SESSIONS, "session-table", context)


# --- project switcher ------------------------------------------------------------------------------


@require_POST
@staff_view()
def project_switch(request: HttpRequest) -> HttpResponse:
    """Work in another of one's projects: every page then shows that project's sessions alone."""
    slug = request.POST.get("project", "")
    found = selectors.project_for_staff(request.user, slug)
    if found is None or found[0].slug != slug:
        messages.error(request, f"You are not a member of project {slug!r}.")
    else:
        request.session[PROJECT_SESSION_KEY] = slug
        messages.success(request, f"Now working in project {found[0].name}.")
    return redirect("sessions")


# --- handoff queue --------------------------------------------------------------------------------


def _queue_token(state: tuple[int, int, float]) -> str:
    # The minute is part of it so that "waiting" times and the overdue highlight move on without a change.
    return ".".join(str(part) for part in (*state, int(timezone.now().timestamp() // 60)))


def _queue_context(request: HttpRequest, *, mine: bool = False,
                   state: tuple[int, int, float] | None = None) -> dict[str, Any]:
    project = request.project
    state = state or selectors.handoff_desk_state(project=project)
    waiting = [] if mine else list(selectors.handoff_queue(project=project).select_related("assignee")[:QUEUE_ROWS])
    taken = selectors.sessions_with_people(project=project, limit=100, assignee=request.user if mine else None)
    minutes = settings.SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES
    params = {"mine": "1"} if mine else {}
    return {
        "mine": mine,
        "waiting": waiting,
        "taken": list(taken),
        # The badge counts the rows the table shows, so the two always agree.
        "waiting_count": len(waiting) if not mine and len(waiting) < QUEUE_ROWS else state[0],
        "warn_minutes": minutes,
        "warn_before": timezone.now() - timedelta(minutes=minutes),
        "poll_url": reverse("handoffs") + "?" + urlencode({**params, "since": _queue_token(state)}),
    }


@require_GET
@staff_view()
def handoff_queue(request: HttpRequest) -> HttpResponse:
    mine = request.GET.get("mine") == "1"
    state = selectors.handoff_desk_state(project=request.project)
    if request.htmx and request.GET.get("since") == _queue_token(state):
        return HttpResponse(status=204)  # the poll's cheap answer: nothing changed, the page stays as it is
    context = _queue_context(request, mine=mine, state=state)
    context["badge_oob"] = bool(request.htmx)
    return _page(request, QUEUE, "handoff-queue", context)


@require_GET
@staff_view()
def handoff_badge(request: HttpRequest) -> HttpResponse:
    """The menu's waiting count, polled from every page but the queue (whose own refresh carries it)."""
    if not request.htmx:
        return redirect("handoffs")
    count = selectors.handoff_waiting_count(project=request.project)
    if request.GET.get("since") == str(count):
        return HttpResponse(status=204)
    return render(request, "contexts/base.html#waiting-badge", {"waiting_count": count})


def _queue_refused(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    status = report(request, exc)
    if not request.htmx:
        return _full_page(request, QUEUE, _queue_context(request), status=status)
    # Someone else got there first: the queue is out of date, so it comes back with the message.
    html = render_to_string(f"{QUEUE}#handoff-queue", {**_queue_context(request), "badge_oob": True}, request)
    return regions.with_flash(request, html, status)


# --- session detail -------------------------------------------------------------------------------


def _detail_page(request: HttpRequest, session: SessionContext, status: int = 200, **extra: Any) -> HttpResponse:
    return _full_page(request, regions.DETAIL, regions.detail_context(request, session, **extra), status=status)


@require_GET
@staff_view()
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    before = request.GET.get("before", "")
    if before.isdigit():
        response = regions.earlier_messages(request, session, int(before))
    elif request.htmx:
        # A link that refreshes one region names it as its hx-target; anything else gets the whole body.
        target = request.htmx.target if request.htmx.target in regions.REGIONS else regions.BODY
        response = HttpResponse(regions.render_regions(request, session, [target]))
    else:
        response = _detail_page(request, session)
    patch_vary_headers(response, ["HX-Target"])
    return response


@require_GET
@staff_view()
def session_live(request: HttpRequest, session_id: str) -> HttpResponse:
    """The detail page's poll: 204 while nothing changed, else the regions that did (and the new token)."""
    if not request.htmx:
        return redirect("session_detail", session_id=session_id)
    session = _session(request, session_id)
    token = regions.live_token(session)
    since = request.GET.get("since", "")
    if since == token:
        return HttpResponse(status=204)
    # The poll includes the edit form's version field when the form is open (hx-include).
    changed = regions.live_changes(since, token, editing="version" in request.GET)
    return HttpResponse(regions.render_regions(request, session, [regions.LIVE, *changed]))


def _answer(request: HttpRequest, session: SessionContext, changed: Sequence[str], status: int,
            **extra: Any) -> HttpResponse:
    """The changed regions (htmx) or the whole page (a plain post), with the messages."""
    if request.htmx:
        return regions.action_result(request, session, changed, status, **extra)
    return _detail_page(request, session, status, **extra)


def _done(request: HttpRequest, session: SessionContext, changed: Sequence[str]) -> HttpResponse:
    """Success on a plain form post redirects (so reload does not repeat it); htmx gets the changed regions."""
    if not request.htmx:
        return redirect("session_detail", session_id=session.session_id)
    return regions.action_result(request, session, changed)


def _refused(request: HttpRequest, session_id: str, exc: ApplicationError, changed: Sequence[str]) -> HttpResponse:
    status = report(request, exc)
    if request.htmx and status not in (409, 412):
        return regions.flash_only(request, status)
    # A conflict means someone else changed the session: show its current state where the action would have.
    return _answer(request, _session(request, session_id), changed, status)


# --- handoff --------------------------------------------------------------------------------------


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_take(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    from_queue = request.POST.get("from") == "queue"
    try:
        session = services.handoff_claim(session=session, actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        if from_queue:
            return _queue_refused(request, exc)
        return _refused(request, session_id, exc, regions.STATUS_CHANGED)
    messages.success(request, "You have taken this conversation; the agent waits until you hand it back.")
    if from_queue:
        target = reverse("session_detail", args=[session.session_id])
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    return _done(request, session, regions.STATUS_CHANGED)


@require_POST
@staff_view(EDIT_PERM)
def handoff_take_over(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    try:
        # The page named the owner the person confirmed taking it from; someone else may own it by now.
        session = services.handoff_take_over(session=session, actor=Actor.for_user(request.user),
                                             expected_owner=request.POST.get("from_owner") or None)
    except ApplicationError as exc:
        return _refused(request, session_id, exc, regions.STATUS_CHANGED)
    messages.success(request, "You have taken this conversation over; the agent waits until you hand it back.")
    return _done(request, session, regions.STATUS_CHANGED)


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_reply(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    form = ReplyForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        services.handoff_reply(session=session, content=form.cleaned_data["content"],
                               actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        status = report(request, exc)
        if request.htmx and status not in (409, 412):
            return regions.flash_only(request, status)
        # Someone else owns it now: show who, and keep the unsent text on the page for the person to copy.
        return _answer(request, _session(request, session_id), regions.REPLY_REFUSED, status,
                       unsent_reply=request.POST.get("content", ""))
    messages.success(request, "Reply sent: the agent passes it on to the customer.")
    return _done(request, _session(request, session_id), regions.REPLIED)


def _note_action(request: HttpRequest, session_id: str, form_class: type, action: Callable[..., SessionContext],
                 done: str, changed: Sequence[str]) -> HttpResponse:
    """A handoff action that takes a note: validate, call the service as this person, report, re-render."""
    session = _session(request, session_id)
    form = form_class(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        session = action(session=session, note=form.cleaned_data["note"], actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        return _refused(request, session_id, exc, changed)
    messages.success(request, done)
    return _done(request, session, changed)


def _add_note(*, session: SessionContext, note: str, actor: Actor) -> SessionContext:
    services.handoff_add_note(session=session, note=note, actor=actor)
    return session  # a note is an event of its own: the session row does not change


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_note(request: HttpRequest, session_id: str) -> HttpResponse:
    return _note_action(request, session_id, NoteForm, _add_note, "Note added.", regions.NOTE_ADDED)


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_release(request: HttpRequest, session_id: str) -> HttpResponse:
    return _note_action(request, session_id, OptionalNoteForm, services.handoff_release,
                        "Handed back to the agent, with a note in its context saying what you did.", regions.RELEASED)


@require_POST
@staff_view(HANDOFF_PERM)
def session_close(request: HttpRequest, session_id: str) -> HttpResponse:
    return _note_action(request, session_id, OptionalNoteForm, services.session_close, "Conversation closed.",
                        regions.STATUS_CHANGED)


# --- editing --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@staff_view(EDIT_PERM)
def session_edit(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    if request.method == "GET":
        if request.htmx:
            return HttpResponse(regions.render_regions(request, session, ["snapshot-panel"], editing=True))
        return _detail_page(request, session, editing=True)
    form = ContextEditForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        session = services.snapshot_update(
            session=session, expected_version=form.cleaned_data["version"], changes=form.changes(request.POST),
            source="staff", actor=Actor.for_user(request.user), reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = report(request, exc)
        session = _session(request, session_id)
        if status == 412:
            # Show the newer version to edit again; the rejected input is kept aside, not written.
            newer = selectors.newer_revision(session, than_version=form.cleaned_data["version"])
            return _answer(request, session, regions.EDITED, status, editing=True, conflict=True,
                           rejected=form.data, rejected_plan=_posted_rows(request), newer=newer,
                           newer_is_mine=newer is not None and newer.actor_user_id == request.user.pk)
        return _answer(request, session, ["snapshot-panel"], status, editing=True, edit_form=form,
                       plan_rows=_posted_rows(request))
    messages.success(request, f"Saved as version {session.version}.")
    return _done(request, session, regions.EDITED)


def _posted_rows(request: HttpRequest) -> list[tuple[str, bool]]:
    plan, done = ContextEditForm.plan_from(request.POST)
    return [(step, step in done) for step in plan]


@require_POST
@staff_view(EDIT_PERM)
def session_revert(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    form = RevertForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        session = services.snapshot_revert(
            session=session, to_version=form.cleaned_data["to_version"],
            expected_version=form.cleaned_data["expected_version"], reason=form.cleaned_data["reason"],
            actor=Actor.for_user(request.user), source="staff",
        )
    except ApplicationError as exc:
        return _refused(request, session_id, exc, regions.RESTORED)
    messages.success(request, f"Restored version {form.cleaned_data['to_version']} as version {session.version}.")
    return _done(request, session, regions.RESTORED)


@require_POST
@staff_view(EDIT_PERM)
def session_reset(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    form = ResetForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        session = services.snapshot_reset(session=session, reason=form.cleaned_data["reason"],
                                          expected_version=form.cleaned_data["expected_version"],
                                          actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        return _refused(request, session_id, exc, regions.RESTORED)
    messages.success(request, f"Context reset (version {session.version}); the history keeps every earlier version.")
    return _done(request, session, regions.RESTORED)


# --- locks and proposals ------------------------------------------------------------------------


@require_POST
@staff_view(EDIT_PERM)
def session_locks(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    form = LocksForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        locks = locks_set(session=session, fields=form.cleaned_data["fields_locked"],
                          reason=form.cleaned_data["reason"], actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        return _refused(request, session_id, exc, regions.LOCKED)
    names = ", ".join(lock.field for lock in locks)
    messages.success(request, f"Locked: {names}." if names else "No field is locked now.")
    return _done(request, session, regions.LOCKED)


@require_POST
@staff_view(EDIT_PERM)
def proposal_accept(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    form = ProposalForm(request.POST)
    try:
        if not form.is_valid() or form.cleaned_data["expected_version"] is None:
            raise first_error(form) if form.errors else InvalidInput("The page did not say which version it shows.")
        field = form.cleaned_data["field"]
        session = locks_proposal_accept(session=session, field=field, actor=Actor.for_user(request.user),
                                        expected_version=form.cleaned_data["expected_version"])
    except ApplicationError as exc:
        return _refused(request, session_id, exc, regions.PROPOSAL_ACCEPTED)
    messages.success(request, f"Accepted the proposed {field} (version {session.version}).")
    return _done(request, session, regions.PROPOSAL_ACCEPTED)


@require_POST
@staff_view(EDIT_PERM)
def proposal_dismiss(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(request, session_id)
    form = ProposalForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        locks_proposal_dismiss(session=session, field=form.cleaned_data["field"], actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        return _refused(request, session_id, exc, regions.PROPOSAL_DISMISSED)
    messages.success(request, f"Dismissed the proposed {form.cleaned_data['field']}.")
    return _done(request, session, regions.PROPOSAL_DISMISSED)


# --- refused CSRF token ---------------------------------------------------------------------------

STALE_PAGE = ("This page is out of date (you may have signed in again in another tab), so that was not done: "
              "reload the page to continue. What you typed is still here; copy it first.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """settings.CSRF_FAILURE_VIEW: an htmx action says so in the page's message region and swaps nothing else, so
    the form keeps what was typed; a plain post gets Django's page."""
    if request.htmx:
        return regions.flash_only(request, 403, error=STALE_PAGE)
    return csrf.csrf_failure(request, reason=reason)
