"""The session page: the page and its live poll, editing the snapshot, revert and reset, locks and proposals."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contexts import selectors, services
from contexts.exceptions import ApplicationError, InvalidInput
from contexts.models import SessionContext
from contexts.services import Actor
from contexts.services.locks import locks_set
from contexts.services.locks import proposal_accept as locks_proposal_accept
from contexts.services.locks import proposal_dismiss as locks_proposal_dismiss

from .. import regions
from ..access import EDIT_PERM, report, staff_view
from ..forms import ContextEditForm, LocksForm, ProposalForm, ResetForm, RevertForm, first_error
from .common import answer, detail_page, done, session_action, session_or_404

# --- the page -------------------------------------------------------------------------------------


@require_GET
@staff_view()
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    session = session_or_404(request, session_id)
    before = regions.seq_param(request.GET.get("before", ""))
    if before is not None:
        transcript = regions.earlier_messages(session, before)
        # Without JavaScript, the whole page (its menu's waiting count too) with those messages in its transcript.
        response = (regions.earlier_items(request, session, transcript) if request.htmx
                    else detail_page(request, session, transcript=transcript))
    elif request.htmx:
        # A link that refreshes one region names it as its hx-target; anything else gets the whole body.
        target = request.htmx.target if request.htmx.target in regions.REGIONS else regions.BODY
        response = HttpResponse(regions.render_regions(request, session, [target]))
    else:
        response = detail_page(request, session)
    patch_vary_headers(response, ["HX-Target"])
    return response


@require_GET
@staff_view()
def session_live(request: HttpRequest, session_id: str) -> HttpResponse:
    """The detail page's poll: 204 while nothing changed, else the regions that did (and the new token)."""
    if not request.htmx:
        return redirect("session_detail", session_id=session_id)
    session = session_or_404(request, session_id)
    token = regions.live_token(session)
    since = request.GET.get("since", "")
    if since == token:
        return HttpResponse(status=204)
    # The poll includes the edit form's version field when the form is open (hx-include).
    changed = regions.live_changes(since, token, editing="version" in request.GET)
    return HttpResponse(regions.render_regions(request, session, [regions.LIVE, *changed]))


# --- editing --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@staff_view(EDIT_PERM)
def session_edit(request: HttpRequest, session_id: str) -> HttpResponse:
    session = session_or_404(request, session_id)
    if request.method == "GET":
        if request.htmx:
            return HttpResponse(regions.render_regions(request, session, ["snapshot-panel"], editing=True))
        return detail_page(request, session, editing=True)
    form = ContextEditForm(request.POST)
    try:
        if not form.is_valid():
            raise first_error(form)
        session = services.snapshot_update(
            session=session, expected_version=form.cleaned_data["version"],
            changes=form.changes(request.POST, session.progress, session.plan), source="staff",
            actor=Actor.for_user(request.user), reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        status = report(request, exc)
        session = session_or_404(request, session_id)
        if status == 412:
            # Show the newer version to edit again; the rejected input is kept aside, not written.
            newer = selectors.newer_revision(session, than_version=form.cleaned_data["version"])
            return answer(request, session, regions.EDITED, status, editing=True, conflict=True,
                          rejected=form.data, rejected_plan=_posted_rows(request), newer=newer,
                          newer_is_mine=newer is not None and newer.actor_user_id == request.user.pk)
        return answer(request, session, ["snapshot-panel"], status, editing=True, edit_form=form,
                      plan_rows=_posted_rows(request))
    if session.version == form.cleaned_data["version"]:
        messages.info(request, f"Nothing changed: the context stays at version {session.version}.")
    else:
        messages.success(request, f"Saved as version {session.version}.")
    return done(request, session, regions.EDITED)


def _posted_rows(request: HttpRequest) -> list[tuple[str, bool]]:
    plan, done_steps = ContextEditForm.plan_from(request.POST)
    return [(step, step in done_steps) for step in plan]


@require_POST
@staff_view(EDIT_PERM)
def session_revert(request: HttpRequest, session_id: str) -> HttpResponse:
    def revert(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        session = services.snapshot_revert(session=session, to_version=data["to_version"],
                                           expected_version=data["expected_version"], reason=data["reason"],
                                           actor=actor, source="staff")
        if session.version == data["expected_version"]:
            return session, f"Nothing changed: version {data['to_version']} holds what the context holds now."
        return session, f"Restored version {data['to_version']} as version {session.version}."

    return session_action(request, session_id, RevertForm, revert, regions.RESTORED)


@require_POST
@staff_view(EDIT_PERM)
def session_reset(request: HttpRequest, session_id: str) -> HttpResponse:
    def reset(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        session = services.snapshot_reset(session=session, reason=data["reason"],
                                          expected_version=data["expected_version"], actor=actor)
        if session.version == data["expected_version"]:
            return session, "Nothing changed: the context was already empty."
        return session, f"Context reset (version {session.version}); the history keeps every earlier version."

    return session_action(request, session_id, ResetForm, reset, regions.RESTORED)


# --- locks and proposals ------------------------------------------------------------------------


@require_POST
@staff_view(EDIT_PERM)
def session_locks(request: HttpRequest, session_id: str) -> HttpResponse:
    def set_locks(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        locks = locks_set(session=session, fields=data["fields_locked"], reason=data["reason"], actor=actor,
                          shown=data["locks_shown"])
        names = ", ".join(lock.field for lock in locks)
        return session, f"Locked: {names}." if names else "No field is locked now."

    return session_action(request, session_id, LocksForm, set_locks, regions.LOCKED)


@require_POST
@staff_view(EDIT_PERM)
def proposal_accept(request: HttpRequest, session_id: str) -> HttpResponse:
    def accept(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        if data["expected_version"] is None:
            raise InvalidInput("The page did not say which version it shows.")
        session = locks_proposal_accept(session=session, field=data["field"], actor=actor,
                                        expected_version=data["expected_version"], proposed_at=data["proposed_at"])
        return session, f"Accepted the proposed {data['field']} (version {session.version})."

    # An open edit form (its version comes along) stays as the person left it; its save meets the conflict view.
    editing = "version" in request.POST
    changed = [name for name in regions.PROPOSAL_ACCEPTED if not (editing and name == "snapshot-panel")]
    return session_action(request, session_id, ProposalForm, accept, changed)


@require_POST
@staff_view(EDIT_PERM)
def proposal_dismiss(request: HttpRequest, session_id: str) -> HttpResponse:
    def dismiss(session: SessionContext, data: dict[str, Any], actor: Actor) -> tuple[SessionContext, str]:
        locks_proposal_dismiss(session=session, field=data["field"], actor=actor, proposed_at=data["proposed_at"])
        return session, f"Dismissed the proposed {data['field']}."

    return session_action(request, session_id, ProposalForm, dismiss, regions.PROPOSAL_DISMISSED)
