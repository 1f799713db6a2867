"""The handoff desk's actions on a session: take, take over, reply, note, hand back, close."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from contexts import services
from contexts.exceptions import ApplicationError
from contexts.models import SessionContext
from contexts.services import Actor

from .. import regions
from ..access import EDIT_PERM, HANDOFF_PERM, report, session_url, staff_view
from ..forms import NoteForm, OptionalNoteForm, ReplyForm, first_error
from .common import answer, done, refused, session_action, session_or_404
from .lists import queue_refused


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_take(request: HttpRequest, session_id: str) -> HttpResponse:
    session = session_or_404(request, session_id)
    from_queue = request.POST.get("from") == "queue"
    try:
        session = services.handoff_claim(session=session, actor=Actor.for_user(request.user))
    except ApplicationError as exc:
        if from_queue:
            return queue_refused(request, exc)
        return refused(request, session_id, exc, regions.STATUS_CHANGED)
    messages.success(request, "You have taken this conversation; the agent waits until you hand it back.")
    if from_queue:
        target = session_url(request, session.session_id)
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    return done(request, session, regions.STATUS_CHANGED)


@require_POST
@staff_view(EDIT_PERM, action="take a conversation over from someone else")
def handoff_take_over(request: HttpRequest, session_id: str) -> HttpResponse:
    def take_over(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        # The page named the owner the person confirmed taking it from; someone else may own it by now.
        session = services.handoff_take_over(session=session, actor=actor,
                                             expected_owner=request.POST.get("from_owner") or None)
        return session, "You have taken this conversation over; the agent waits until you hand it back."

    return session_action(request, session_id, None, take_over, regions.STATUS_CHANGED)


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_reply(request: HttpRequest, session_id: str) -> HttpResponse:
    session = session_or_404(request, session_id)
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
        return answer(request, session_or_404(request, session_id), regions.REPLY_REFUSED, status,
                      unsent_reply=request.POST.get("content", ""))
    messages.success(request, "Reply sent: the agent passes it on to the customer.")
    return done(request, session_or_404(request, session_id), regions.REPLIED)


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_note(request: HttpRequest, session_id: str) -> HttpResponse:
    def add_note(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        services.handoff_add_note(session=session, note=data["note"], actor=actor)
        return session, "Note added."  # a note is an event of its own: the session row does not change

    return session_action(request, session_id, NoteForm, add_note, regions.NOTE_ADDED)


@require_POST
@staff_view(HANDOFF_PERM)
def handoff_release(request: HttpRequest, session_id: str) -> HttpResponse:
    def release(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        session = services.handoff_release(session=session, note=data["note"], actor=actor)
        return session, "Handed back to the agent, with a note in its context saying what you did."

    return session_action(request, session_id, OptionalNoteForm, release, regions.RELEASED)


@require_POST
@staff_view(HANDOFF_PERM)
def session_close(request: HttpRequest, session_id: str) -> HttpResponse:
    def close(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        return services.session_close(session=session, note=data["note"], actor=actor), "Conversation closed."

    return session_action(request, session_id, OptionalNoteForm, close, regions.STATUS_CHANGED)
