"""Locks and proposals on the staff session page (#18.6)."""

from __future__ import annotations

import re

import pytest

from contexts.models import ExtractionRun, FieldLock, LockChange, Proposal, Revision
from contexts.services import Actor
from contexts.services.locks import locks_set, proposals_record
from tests.factories import make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db

PLAN = ["Book flights", "Book a hotel"]


def _proposed(session_id: str):
    """A session with a locked plan and the plan an extraction proposed instead."""
    session = make_session(session_id, content={"goal": "Lisbon", "plan": PLAN})
    locks_set(session=session, fields=["plan"], reason="Agreed", actor=Actor.for_user(make_user("lia", role="editor")))
    run = ExtractionRun.objects.create(session=session, trigger="test")
    proposals_record(session, withheld={"plan": ["Book flights", "Take the train"]}, run=run)
    session.refresh_from_db()
    return session


def test_an_editor_locks_fields_with_a_reason_from_the_page(editor):
    session = make_session("wl-1", content={"goal": "Lisbon", "plan": PLAN})

    response = editor.post("/sessions/wl-1/locks/", {"fields_locked": ["plan", "goal"], "reason": "Agreed"}, **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="locks-panel"' in html and 'data-lock="plan"' in html and "Locked: goal, plan." in html
    assert set(FieldLock.objects.filter(session=session).values_list("field", flat=True)) == {"goal", "plan"}
    change = LockChange.objects.get(session=session)
    assert (change.fields, change.actor, change.reason) == (["goal", "plan"], "user:eve-editor", "Agreed")


def test_locking_without_a_reason_is_refused_and_locks_nothing(editor):
    make_session("wl-2")
    response = editor.post("/sessions/wl-2/locks/", {"fields_locked": ["plan"], "reason": ""}, **HTMX)
    assert response.status_code == 400 and "reason is required" in response.content.decode()
    assert not FieldLock.objects.exists() and not LockChange.objects.exists()


def test_unlocking_one_field_and_keeping_another_needs_no_reason(editor):
    # The form says "(required to lock)", and unlocking all needed none: unlocking one of two asked for one.
    make_session("wl-2b")
    editor.post("/sessions/wl-2b/locks/", {"fields_locked": ["goal", "plan"], "reason": "Agreed", "locks_shown": ""},
                **HTMX)

    response = editor.post("/sessions/wl-2b/locks/", {"fields_locked": ["plan"], "reason": "",
                                                      "locks_shown": "goal,plan"}, **HTMX)

    assert response.status_code == 200, response.content.decode()
    assert [(lock.field, lock.reason) for lock in FieldLock.objects.all()] == [("plan", "Agreed")]
    refused = editor.post("/sessions/wl-2b/locks/", {"fields_locked": ["plan", "goal"], "reason": "",
                                                     "locks_shown": "plan"}, **HTMX)
    assert refused.status_code == 400 and "reason is required" in refused.content.decode()


def test_the_page_shows_a_proposal_as_a_diff_with_accept_and_dismiss(editor, support):
    _proposed("wl-3")
    html = editor.get("/sessions/wl-3/").content.decode()
    assert 'data-proposal="plan"' in html
    assert "<del>− Book a hotel</del>" in html and "<ins>+ Take the train</ins>" in html
    assert 'data-action="accept-plan"' in html and 'data-action="dismiss-plan"' in html
    support_html = support.get("/sessions/wl-3/").content.decode()
    assert 'data-proposal="plan"' in support_html and 'data-action="accept-plan"' not in support_html
    assert 'name="fields_locked"' not in support_html


def test_accept_on_the_page_writes_exactly_the_proposal_as_the_editors_revision(editor):
    session = _proposed("wl-4")

    response = editor.post("/sessions/wl-4/proposals/accept/", {"field": "plan",
                                                                "expected_version": str(session.version)}, **HTMX)

    assert response.status_code == 200
    session.refresh_from_db()
    assert session.plan == ["Book flights", "Take the train"] and session.version == 2
    revision = Revision.objects.get(session=session, version=2)
    assert (revision.source, revision.actor, revision.changed_fields) == ("staff", "user:eve-editor", ["plan"])
    assert not Proposal.objects.exists()
    assert 'data-proposal="plan"' not in response.content.decode()


def test_accept_from_a_stale_page_changes_nothing(editor):
    session = _proposed("wl-5")
    response = editor.post("/sessions/wl-5/proposals/accept/", {"field": "plan", "expected_version": "0"}, **HTMX)
    assert response.status_code == 412
    session.refresh_from_db()
    assert (session.plan, session.version) == (PLAN, 1)
    assert Proposal.objects.filter(session=session).exists()


def test_dismiss_on_the_page_drops_the_proposal(editor):
    session = _proposed("wl-6")
    response = editor.post("/sessions/wl-6/proposals/dismiss/", {"field": "plan"}, **HTMX)
    assert response.status_code == 200
    session.refresh_from_db()
    assert (session.plan, session.version) == (PLAN, 1) and not Proposal.objects.exists()


def test_a_new_proposal_reaches_an_open_page_through_the_live_check(editor):
    session = make_session("wl-7", content={"plan": PLAN})
    locks_set(session=session, fields=["plan"], reason="Agreed", actor=Actor.system("test"))
    page = editor.get("/sessions/wl-7/").content.decode()
    token = page.split("/live/?since=", 1)[1].split('"', 1)[0]

    proposals_record(session, withheld={"plan": ["Only trains"]}, run=None)
    live = editor.get("/sessions/wl-7/live/", {"since": token}, **HTMX)

    assert live.status_code == 200
    html = live.content.decode()
    assert 'data-proposal="plan"' in html and "Only trains" in html
    assert 'name="fields_locked"' not in html  # the lock form, and a reason being typed in it, stay as they are


def _posted_form(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the page's form for `action` ("accept-plan"), as the browser would post them."""
    form = html.split(f'data-action="{action}"', 1)[0].rsplit("<form", 1)[1]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))


@pytest.mark.parametrize("action", ["accept", "dismiss"])
def test_a_proposal_replaced_after_the_page_showed_it_is_neither_accepted_nor_dismissed_unseen(editor, action):
    session = _proposed("wl-8")
    shown = _posted_form(editor.get("/sessions/wl-8/").content.decode(), f"{action}-plan")
    proposals_record(session, withheld={"plan": ["Never shown to anyone"]}, run=None)  # a later extraction

    response = editor.post(f"/sessions/wl-8/proposals/{action}/", shown, **HTMX)

    assert response.status_code == 409 and "replaced the proposed plan" in response.content.decode()
    session.refresh_from_db()
    assert (session.plan, session.version) == (PLAN, 1)
    assert Proposal.objects.get(session=session).value == ["Never shown to anyone"]
    # The answer shows the new proposal; accepting that one, as shown, works.
    again = _posted_form(editor.get("/sessions/wl-8/").content.decode(), f"{action}-plan")
    assert editor.post(f"/sessions/wl-8/proposals/{action}/", again, **HTMX).status_code == 200
    session.refresh_from_db()
    assert not Proposal.objects.exists()
    assert session.plan == (["Never shown to anyone"] if action == "accept" else PLAN)


@pytest.mark.parametrize("first,then", [("accept", "dismiss"), ("dismiss", "accept"), ("accept", "accept")])
def test_a_proposal_a_colleague_acted_on_since_the_page_showed_it_is_a_conflict_not_a_success(editor, first, then):
    # "Dismissed the proposed plan." was the answer after a colleague had accepted it.
    session = _proposed("wl-11")
    page = editor.get("/sessions/wl-11/").content.decode()
    colleague = _posted_form(page, f"{first}-plan")
    assert editor.post(f"/sessions/wl-11/proposals/{first}/", colleague, **HTMX).status_code == 200
    session.refresh_from_db()
    after_colleague = (session.plan, session.version)

    response = editor.post(f"/sessions/wl-11/proposals/{then}/", _posted_form(page, f"{then}-plan"), **HTMX)

    assert response.status_code == 409 and "no longer there" in response.content.decode()
    session.refresh_from_db()
    assert (session.plan, session.version) == after_colleague


def test_a_page_that_showed_no_lock_cannot_silently_unlock_one_set_since(editor):
    session = make_session("wl-9", content={"plan": PLAN})
    page = editor.get("/sessions/wl-9/").content.decode()
    assert 'name="locks_shown" value=""' in page
    locks_set(session=session, fields=["plan"], reason="Agreed with the customer",
              actor=Actor.for_user(make_user("olga", role="editor")))

    response = editor.post("/sessions/wl-9/locks/", {"fields_locked": ["goal"], "reason": "mine", "locks_shown": ""},
                           **HTMX)

    assert response.status_code == 409 and "Someone changed the locks" in response.content.decode()
    assert set(FieldLock.objects.filter(session=session).values_list("field", flat=True)) == {"plan"}
    # The answer shows the locks as they are; from there the change goes through.
    assert 'name="locks_shown" value="plan"' in response.content.decode()
    editor.post("/sessions/wl-9/locks/", {"fields_locked": ["goal", "plan"], "reason": "mine",
                                          "locks_shown": "plan"}, **HTMX)
    assert set(FieldLock.objects.filter(session=session).values_list("field", flat=True)) == {"goal", "plan"}


def test_accepting_a_proposal_leaves_an_open_edit_form_as_it_is(editor):
    session = _proposed("wl-10")
    page = editor.get("/sessions/wl-10/").content.decode()
    assert 'hx-include="#edit-form [name=version], #live-since"' in _posted_form_tag(page, "accept-plan")

    # The edit form is open: its version comes along with the accept.
    editing = editor.post("/sessions/wl-10/proposals/accept/", {"field": "plan", "expected_version": "1",
                                                               "version": "1"}, **HTMX)
    assert editing.status_code == 200 and 'id="snapshot-panel"' not in editing.content.decode()
    session.refresh_from_db()
    assert session.plan == ["Book flights", "Take the train"]

    # Without an open form the panel shows the accepted plan at once.
    proposals_record(session, withheld={"plan": ["Only trains"]}, run=None)
    plain = editor.post("/sessions/wl-10/proposals/accept/", {"field": "plan", "expected_version": "2"}, **HTMX)
    assert 'id="snapshot-panel"' in plain.content.decode() and "Only trains" in plain.content.decode()


def _posted_form_tag(html: str, action: str) -> str:
    return html.split(f'data-action="{action}"', 1)[0].rsplit("<form", 1)[1].split(">", 1)[0]
