"""The lists: sessions, the handoff queue and the menu's waiting badge; the project switcher."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from contexts import selectors
from contexts.exceptions import ApplicationError

from .. import regions
from ..access import PROJECT_SESSION_KEY, report, staff_view
from ..forms import SessionFilterForm, first_error
from .common import full_page, page_or_partial

PAGE_SIZE = 25
QUEUE_ROWS = 200
TAKEN_ROWS = 100  # conversations with a person the desk lists (longest-held first); the heading counts them all
SESSIONS = "contexts/sessions.html"
QUEUE = "contexts/handoffs.html"


# --- sessions list --------------------------------------------------------------------------------


@require_GET
@staff_view()
def session_list(request: HttpRequest) -> HttpResponse:
    form = SessionFilterForm(request.GET)
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    sort = data.get("sort") or "-updated"
    # A search or filter that is not valid (too long, an unknown status) lists nothing and says why: every
    # session listed as if it matched would be a wrong answer.
    page = selectors.session_page(
        selectors.session_search(project=request.project, **form.filters()), sort=sort, after=data.get("after", ""),
        before=data.get("before", ""), size=PAGE_SIZE,
    ) if valid else selectors.SessionPage(rows=[], next_cursor=None, prev_cursor=None)
    keep = {k: v for k, v in request.GET.items() if k not in ("after", "before") and v}

    def url(**params: str) -> str:
        merged = {**keep, **params}
        return reverse("sessions") + ("?" + urlencode(merged) if merged else "")

    context = {
        "form": form,
        "filter_error": "" if valid else first_error(form).message,
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
    return page_or_partial(request, SESSIONS, "session-table", context)


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
    assignee = request.user if mine else None
    taken = list(selectors.sessions_with_people(project=project, limit=TAKEN_ROWS, assignee=assignee))
    if len(taken) < TAKEN_ROWS:
        taken_count = len(taken)
    elif mine:
        taken_count = selectors.sessions_with_people(project=project, limit=None, assignee=assignee).count()
    else:
        taken_count = state[1]
    minutes = settings.SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES
    params = {"mine": "1"} if mine else {}
    return {
        "mine": mine,
        "waiting": waiting,
        "taken": taken,
        "taken_count": taken_count,
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
    return page_or_partial(request, QUEUE, "handoff-queue", context)


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


def queue_refused(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    """A take from the queue that was refused: the message, with the queue as it is now."""
    status = report(request, exc)
    if not request.htmx:
        return full_page(request, QUEUE, _queue_context(request), status=status)
    # Someone else got there first: the queue is out of date, so it comes back with the message.
    html = render_to_string(f"{QUEUE}#handoff-queue", {**_queue_context(request), "badge_oob": True}, request)
    return regions.with_flash(request, html, status)
