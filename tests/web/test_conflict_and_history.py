"""The edit conflict view keeps every rejected field and names the other writer; the history reads as people talk:
who reset the context, human labels in diffs, no "Restore" on a revision that changed only the status."""

from __future__ import annotations

import re

import pytest

from contexts import services
from contexts.services import Actor
from tests.factories import make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


@pytest.fixture
def planned():
    return make_session("c-1", mode="planning", user_id="carol", content={
        "summary": "Carol wants a refund.", "goal": "Refund Carol", "plan": ["Check", "Refund"], "progress": []})


def _stale_edit(version: int) -> dict:
    return {"version": str(version), "summary": "My stale summary", "goal": "My stale goal",
            "other_progress": "Called the bank", "reason": "my reason for the edit",
            "step_id": ["r1", "r2", "new"], "step_text": ["Check the charges", "Refund", "Tell Carol"],
            "step_done": ["r1", "new"]}


def _unsaved(html: str) -> str:
    return html.split("Your unsaved edit", 1)[1].split("</details>", 1)[0]


def test_the_conflict_view_keeps_every_rejected_field_with_the_plan_ticks(editor, planned):
    services.snapshot_update(session=planned, expected_version=planned.version, changes={"summary": "Newer"},
                             source="api", actor=Actor.system("agent"))
    response = editor.post("/sessions/c-1/edit/", _stale_edit(planned.version), **HTMX)
    assert response.status_code == 412
    kept = _unsaved(response.content.decode())
    for text in ("My stale summary", "My stale goal", "Called the bank", "my reason for the edit"):
        assert text in kept
    steps = re.findall(r'<li class="(done|todo)">.*?<span>([^<]*)</span></li>', kept, re.S)
    assert steps == [("done", "Check the charges"), ("todo", "Refund"), ("done", "Tell Carol")]


def test_the_conflict_view_names_the_other_writer(editor, planned):
    ed = make_user("ed-editor", role="editor")
    services.snapshot_update(session=planned, expected_version=planned.version, changes={"summary": "Ed's"},
                             source="staff", actor=Actor.for_user(ed))
    html = editor.post("/sessions/c-1/edit/", _stale_edit(planned.version), **HTMX).content.decode()
    said = html.split('conflict" role="alert">', 1)[1].split("</p>", 1)[0]
    assert "Someone else changed this context" in said and "ed-editor" in said


def test_the_conflict_view_says_you_in_another_tab_when_it_was_you(editor, editor_user, planned):
    services.snapshot_update(session=planned, expected_version=planned.version, changes={"summary": "Mine"},
                             source="staff", actor=Actor.for_user(editor_user))
    html = editor.post("/sessions/c-1/edit/", _stale_edit(planned.version), **HTMX).content.decode()
    said = html.split('conflict" role="alert">', 1)[1].split("</p>", 1)[0]
    assert "you, in another tab" in said and "Someone else" not in said


def test_after_a_reset_the_empty_context_says_it_was_reset_and_by_whom(editor, editor_user, planned):
    services.snapshot_reset(session=planned, reason="wrong customer", actor=Actor.for_user(editor_user))
    html = editor.get("/sessions/c-1/").content.decode()
    panel = html.split('id="snapshot-panel"', 1)[1].split("</section>", 1)[0]
    assert re.search(r"reset by eve-editor.*wrong customer", panel, re.S), panel


def test_diffs_use_human_labels_and_a_status_only_revision_offers_no_restore(editor, planned):
    services.handoff_request(session=planned, reason="refund", actor=Actor.system("agent"))
    html = editor.get("/sessions/c-1/").content.decode()
    history = html.split('id="history"', 1)[1]
    status_only = history.split('id="v2"', 1)[1].split('class="rev"', 1)[0]
    assert "With the agent" in status_only and "Waiting for a person" in status_only
    assert "handoff_requested" not in status_only and "<dt>status</dt>" not in status_only
    assert "Restore" not in status_only
    first = history.split('id="v1"', 1)[1]
    assert "<dt>Summary</dt>" in first


def test_taking_the_conversation_while_editing_says_what_you_did_not_another_tab(editor, planned):
    editor.get("/sessions/c-1/edit/", **HTMX)  # the form opens at this version
    assert editor.post("/sessions/c-1/take-over/", {}, **HTMX).status_code == 200

    html = editor.post("/sessions/c-1/edit/", _stale_edit(planned.version), **HTMX).content.decode()

    said = html.split('conflict" role="alert">', 1)[1].split("</p>", 1)[0]
    assert "You changed this context while you were editing here" in said
    assert "you: Taken over by a person" in said and "another tab" not in said
    assert "My stale summary" in _unsaved(html)  # kept to apply again
