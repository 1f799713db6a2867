"""The session page's regions and what each action changes.

A region is a named partial of session_detail.html whose root element has the partial's name as its id. An
htmx action answers with the region its form targets, then the other regions it changed as out-of-band swaps,
then the flash messages; a refusal that changed nothing answers with the messages alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django_htmx.http import reswap

from contexts import selectors
from contexts.models import SessionContext, Status
from contexts.selectors.locks import lock_panel, locks_token
from contexts.selectors.usage import session_usage
from contexts.services import Actor, handoff_note_room
from contexts.services.locks import LOCKABLE_FIELDS
from contexts.snapshot import NOTE_MAX_CHARS, REASON_MAX_CHARS

from .access import EDIT_PERM, HANDOFF_PERM, role_allows
from .forms import ContextEditForm

DETAIL = "contexts/session_detail.html"
FLASH = "contexts/base.html#flash"
BODY = "session-body"
LIVE = "live"  # the element that polls for changes (see live_token); it carries the token of what the page shows
REGIONS = frozenset({BODY, "session-head", "session-actions", "snapshot-panel", "handoff-note", "transcript",
                     "reply-box", "handoff-timeline", "runs", "history", "reset-panel", "locks-panel", "proposals",
                     LIVE})

TRANSCRIPT_PAGE = 200  # messages the transcript shows at once; "Load earlier messages" fetches the page before
TRANSCRIPT_MAX = 2000  # messages a re-rendered transcript keeps of those the person loaded
TIMELINE_MAX = 200  # the newest handoff-timeline entries the page shows

# What each action leaves out of date; the first is the region its form targets. Every version bump dates the
# head (version, status), the history (the new revision) and the reset form (the version it expects).
EDITED = ("snapshot-panel", "session-head", "history", "reset-panel", "proposals")
RESTORED = (*EDITED, "handoff-note")  # a revert or reset also brings back or empties the handoff note
STATUS_CHANGED = ("session-head", "session-actions", "reply-box", "handoff-timeline", "history", "reset-panel")
RELEASED = (*STATUS_CHANGED, "handoff-note")
NOTE_ADDED = ("handoff-timeline",)
LOCKED = ("locks-panel", "proposals")
PROPOSAL_ACCEPTED = ("proposals", "snapshot-panel", "session-head", "history", "reset-panel")
PROPOSAL_DISMISSED = ("proposals",)
REPLIED = ("reply-box", "transcript", "session-head")
# A refused reply: someone else owns it now, so the controls and the timeline are out of date too.
REPLY_REFUSED = (*REPLIED, "session-actions", "handoff-timeline")

# What the live check re-renders for each part of the token that moved. Regions holding form fields
# (session-actions, reply-box) change only with the owner, so a live update never wipes what someone is typing.
_LIVE_PARTS = (
    # version; the transcript too, as an extraction moves the "not yet summarised" marks
    ("session-head", "snapshot-panel", "handoff-note", "history", "reset-panel", "runs", "transcript", "proposals"),
    ("session-head", "transcript"),  # last message seq
    ("session-head", "session-actions", "reply-box", "handoff-timeline"),  # status
    ("session-head", "session-actions", "reply-box", "handoff-timeline"),  # assignee
    ("handoff-timeline",),  # newest timeline entry (a note changes no session row)
    # The lock form re-renders only when the locks change, so a live update never wipes a reason being typed.
    ("locks-panel", "proposals"),  # the locks
    ("proposals",),  # a proposal (an extraction that only proposes moves no version)
)

# The rows each region shows besides the session itself, loaded only for the regions being rendered.
_LOADERS: dict[str, tuple[str, Callable[[SessionContext], Any]]] = {
    "snapshot-panel": ("progress", selectors.plan_progress),
    "transcript": ("transcript", lambda s: selectors.recent_messages(s, limit=TRANSCRIPT_PAGE)),
    "handoff-timeline": ("events", lambda s: selectors.handoff_events_for(s, limit=TIMELINE_MAX)),
    "runs": ("runs", lambda s: list(selectors.runs_for(s)[:20])),
    "history": ("history", lambda s: selectors.revision_history(s, limit=50)),
    "locks-panel": ("locking", lock_panel),
    "proposals": ("locking", lock_panel),
}


def detail_context(request: HttpRequest, session: SessionContext, regions: Iterable[str] = (BODY,),
                   **extra: Any) -> dict[str, Any]:
    """What the named regions (the whole body by default) need to render `session` for this person."""
    regions = set(regions)
    user = request.user
    context: dict[str, Any] = {
        "session": session,
        # The role in the page's project (staff_view's request.project_role), not only the group: a support member
        # there gets no editor controls, which would only answer 403.
        "can_edit": user.has_perm(EDIT_PERM) and role_allows(getattr(request, "project_role", None), EDIT_PERM),
        "can_handle": user.has_perm(HANDOFF_PERM),
        "is_mine": session.status == Status.HUMAN and session.assignee_id == user.pk,
        "reason_max_chars": REASON_MAX_CHARS,
        "note_max_chars": NOTE_MAX_CHARS,
        "lockable": LOCKABLE_FIELDS,
        "timeline_max": TIMELINE_MAX,
    }
    if context["is_mine"]:  # the hand-back form: what fits after who handled it and when
        context["release_note_room"] = handoff_note_room(Actor.for_user(user))
    context["can_close"] = session.status != Status.CLOSED and (session.status != Status.HUMAN or context["is_mine"])
    if BODY in regions or LIVE in regions:
        context["live_token"] = live_token(session)
    for region, (key, load) in _LOADERS.items():
        if (BODY in regions or region in regions) and key not in context:  # two regions share the lock panel
            context[key] = load(session)
    if BODY in regions or "runs" in regions:
        context["usage"] = session_usage(session)  # every run of the session, not only those the card lists
    # The person loaded earlier messages (the live check and a reply say from where): a re-render keeps them.
    start = seq_param(request.GET.get("transcript_from") or request.POST.get("transcript_from", ""))
    shown = context.get("transcript")
    if shown and start is not None and start < shown[0].seq:
        context["transcript"] = selectors.recent_messages(session, limit=TRANSCRIPT_MAX, from_seq=start)
    if (BODY in regions or "snapshot-panel" in regions) and session.is_empty:
        context["reset_revision"] = selectors.reset_revision(session)
    context.update(extra)
    if context.get("editing") and "edit_form" not in context:
        context["edit_form"] = ContextEditForm.for_session(session, context.get("progress"))
    if context.get("editing") and "plan_rows" not in context:
        # A refused save passes the rows it posted, none if the person removed every step: never the old plan then.
        context["plan_rows"] = (context.get("progress") or selectors.plan_progress(session)).steps
    return context


def seq_param(value: str) -> int | None:
    """A message number from a page address or a posted form, None if it is not one: ASCII digits ("²" is a digit
    to isdigit(), not to int()), and no more of them than a seq can have (int() refuses over 4,300: a 500)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def live_token(session: SessionContext) -> str:
    """What the page shows, as a token the live check compares: it changes whenever a region would."""
    return ".".join(str(part) for part in (session.version, session.last_message_seq, session.status,
                                           session.assignee_id or 0, selectors.handoff_latest_event_id(session),
                                           locks_token(session)))


def live_changes(since: str, token: str, *, editing: bool = False) -> list[str]:
    """The regions to re-render for a page showing `since` (all of them if it is not a token of ours)."""
    old, new = since.split("."), token.split(".")
    if len(old) != len(_LIVE_PARTS):
        old = [""] * len(_LIVE_PARTS)
    changed: list[str] = []
    for was, now, names in zip(old, new, _LIVE_PARTS, strict=True):
        if was != now:
            changed += [name for name in names if name not in changed]
    if editing and "snapshot-panel" in changed:
        # An open edit form stays as the person left it; a save against an old version meets the conflict view.
        changed.remove("snapshot-panel")
    return changed


def render_regions(request: HttpRequest, session: SessionContext, regions: Sequence[str], **extra: Any) -> str:
    """The first region in place, the others marked to be swapped out of band."""
    context = detail_context(request, session, regions, **extra)
    html = [render_to_string(f"{DETAIL}#{regions[0]}", context, request)]
    html += [render_to_string(f"{DETAIL}#{name}", {**context, "oob": True}, request) for name in regions[1:]]
    return "".join(html)


def earlier_messages(session: SessionContext, before_seq: int) -> list:
    """The page of messages before `before_seq` ("Load earlier messages")."""
    return selectors.recent_messages(session, limit=TRANSCRIPT_PAGE, before_seq=before_seq)


def earlier_items(request: HttpRequest, session: SessionContext, transcript: list) -> HttpResponse:
    """Those messages as the list items that replace the "Load earlier" link (htmx)."""
    context = {"session": session, "transcript": transcript, "from_oob": True}
    return HttpResponse(render_to_string(f"{DETAIL}#transcript-items", context, request)
                        + render_to_string(f"{DETAIL}#transcript-from", context, request))


def with_flash(request: HttpRequest, html: str, status: int = 200, **context: Any) -> HttpResponse:
    """An action's answer: its regions and the messages, which replace (or clear) the ones shown before."""
    flash = render_to_string(FLASH, {**context, "oob": True}, request)
    return HttpResponse(html + flash, status=status)


def action_result(request: HttpRequest, session: SessionContext, regions: Sequence[str], status: int = 200,
                  **extra: Any) -> HttpResponse:
    # The live check's token moves with the page, or its next poll would re-render (and empty) the forms just shown;
    # so what changed before the action that the page had not shown yet (an agent's version, a message) comes along,
    # or the moved token would hide it until the next change.
    before = getattr(request, "live_before", None)
    since = request.POST.get("live_since", "")
    missed = live_changes(since, before, editing="version" in request.POST) if before and since != before else []
    regions = [*regions, *(name for name in missed if name not in regions)]
    return with_flash(request, render_regions(request, session, [*regions, LIVE], **extra), status,
                      conflict=extra.get("conflict", False))


def flash_only(request: HttpRequest, status: int, **context: Any) -> HttpResponse:
    """A refusal that changed nothing: the message alone, and the form stays as the person left it."""
    return reswap(with_flash(request, "", status, **context), "none")
