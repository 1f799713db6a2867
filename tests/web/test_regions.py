"""htmx actions re-render only the regions they changed; plain form posts still redirect or show the whole page."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contexts import services
from contexts.models import HandoffEvent, Revision
from contexts.services import Actor
from contexts.snapshot import REASON_MAX_CHARS
from tests.factories import make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db

REGION = re.compile(r'<\w+ id="(session-body|session-head|snapshot-panel|handoff-note|transcript|handoff-timeline|runs'
                    r'|history|reset-panel|flash|handoff-queue|session-table)"([^>]*)>')


def regions_in(html: str) -> list[tuple[str, str]]:
    """The regions of an answer in order, each with how it is swapped: "target" or its hx-swap-oob value."""
    found = []
    for name, attrs in REGION.findall(html):
        oob = re.search(r'hx-swap-oob="([^"]+)"', attrs)
        found.append((name, oob.group(1) if oob else "target"))
    return found


@pytest.fixture
def chat():
    session = make_session("r-1", user_id="carol", content={"summary": "Needs a refund", "plan": ["Check", "Refund"]})
    services.messages_append(session=session, messages=[{"role": "user", "content": "Transcript line"}])
    services.handoff_request(session=session, reason="Refunds need a human.", actor=Actor.system("agent"))
    session.refresh_from_db()
    return session


def edit_data(version: int, **over) -> dict:
    data = {"version": str(version), "summary": "New summary", "goal": "", "other_progress": "",
            "step_id": ["r1", "new"], "step_text": ["Check", ""], "reason": "tidy"}
    data.update(over)
    return data


def test_an_htmx_edit_answers_with_the_snapshot_panel_and_the_history_out_of_band_not_the_transcript(editor, chat):
    version = chat.version
    html = editor.post("/sessions/r-1/edit/", edit_data(version), **HTMX).content.decode()
    assert regions_in(html) == [("snapshot-panel", "target"), ("session-head", "true"), ("history", "true"),
                                ("reset-panel", "true"), ("flash", "innerHTML")]
    assert "New summary" in html and f"version {version + 1}" in html
    history = html[html.index('<section id="history"'):html.index('<section id="reset-panel"')]
    assert f'id="v{version + 1}"' in history and '<span class="tag current">current</span>' in history
    assert f'name="expected_version" value="{version + 1}"' in html  # the reset form expects the new version
    assert "Transcript line" not in html and "<html" not in html and 'id="session-body"' not in html


def test_taking_answers_with_the_head_and_sends_timeline_and_history_out_of_band(support, support_user, chat):
    html = support.post("/sessions/r-1/take/", **HTMX).content.decode()
    # Support cannot reset: the reset panel renders nothing, so nothing is sent for it.
    assert regions_in(html) == [("session-head", "target"), ("handoff-timeline", "true"), ("history", "true"),
                                ("flash", "innerHTML")]
    head = html[:html.index('<section id="handoff-timeline"')]
    assert "badge-human" in head and "sam-support (you)" in head and 'data-action="release"' in head
    assert "badge-ev-claimed" in html and "You have taken this conversation" in html
    assert 'id="snapshot-panel"' not in html and "Transcript line" not in html


def test_handing_back_also_sends_the_handoff_note_but_leaves_the_snapshot_panel_alone(editor, editor_user, chat):
    services.handoff_claim(session=chat, actor=Actor.for_user(editor_user))
    html = editor.post("/sessions/r-1/release/", {"note": "Refund issued."}, **HTMX).content.decode()
    assert [name for name, _ in regions_in(html)] == ["session-head", "handoff-timeline", "history", "reset-panel",
                                                      "handoff-note", "flash"]
    note = html[html.index('<div id="handoff-note"'):]
    assert 'data-field="handoff_note"' in note and "Refund issued." in note
    assert 'id="snapshot-panel"' not in html


def test_a_note_sends_only_the_timeline_and_reads_no_revisions_messages_or_runs(support, chat):
    with CaptureQueriesContext(connection) as queries:
        html = support.post("/sessions/r-1/note/", {"note": "Called the bank."}, **HTMX).content.decode()
    assert regions_in(html) == [("handoff-timeline", "target"), ("flash", "innerHTML")]
    assert "Called the bank." in html and "Note added." in html
    tables = " ".join(q["sql"] for q in queries.captured_queries)
    assert "contexts_revision" not in tables and "contexts_message" not in tables
    assert "contexts_extractionrun" not in tables


@pytest.mark.parametrize(("url", "data"), [
    ("/sessions/r-1/revert/", {"to_version": "1", "reason": "back"}),
    ("/sessions/r-1/reset/", {"reason": "start over", "confirm": "on"}),
])
def test_revert_and_reset_send_the_snapshot_panel_and_everything_the_new_version_dates(editor, chat, url, data):
    chat = services.snapshot_update(session=chat, expected_version=chat.version, changes={"summary": "Wrong"},
                                    source="api", actor=Actor.system("agent"))
    response = editor.post(url, {**data, "expected_version": str(chat.version)}, **HTMX)
    assert response.status_code == 200
    assert regions_in(response.content.decode()) == [
        ("snapshot-panel", "target"), ("session-head", "true"), ("history", "true"), ("reset-panel", "true"),
        ("handoff-note", "true"), ("flash", "innerHTML")]
    chat.refresh_from_db()
    assert Revision.objects.filter(session=chat, version=chat.version, actor="user:eve-editor").exists()


def test_a_refusal_that_changed_nothing_sends_only_the_message_and_swaps_nothing_else(editor, chat):
    version = chat.version
    response = editor.post("/sessions/r-1/reset/", {"reason": "start over", "expected_version": str(version)},
                           **HTMX)
    assert response.status_code == 400 and response["HX-Reswap"] == "none"
    html = response.content.decode()
    assert regions_in(html) == [("flash", "innerHTML")] and "Tick the confirmation box" in html
    chat.refresh_from_db()
    assert chat.version == version


def test_a_take_someone_else_won_refreshes_the_head_with_the_owner_and_the_message(support, chat):
    olga = make_user("olga", role="support")
    services.handoff_claim(session=chat, actor=Actor.for_user(olga))
    response = support.post("/sessions/r-1/take/", **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert [name for name, _ in regions_in(html)][:2] == ["session-head", "handoff-timeline"]
    assert "olga" in html[:html.index('<section id="handoff-timeline"')]
    assert "olga has already taken this conversation." in html
    assert HandoffEvent.objects.filter(session=chat, kind="claimed").count() == 1


def test_a_link_that_targets_one_region_gets_only_that_region(editor, chat):
    response = editor.get("/sessions/r-1/", HTTP_HX_TARGET="transcript", **HTMX)
    html = response.content.decode()
    assert regions_in(html) == [("transcript", "target")] and "Transcript line" in html
    assert "HX-Request" in response["Vary"] and "HX-Target" in response["Vary"]
    # Cancel on the edit form asks for the snapshot panel: the context as it is, no form.
    html = editor.get("/sessions/r-1/", HTTP_HX_TARGET="snapshot-panel", **HTMX).content.decode()
    assert regions_in(html) == [("snapshot-panel", "target")] and 'id="edit-form"' not in html
    assert 'href="/sessions/r-1/edit/" hx-get="/sessions/r-1/edit/"' in html


def test_the_edit_form_alone_comes_back_for_an_htmx_get(editor, chat):
    html = editor.get("/sessions/r-1/edit/", **HTMX).content.decode()
    assert regions_in(html) == [("snapshot-panel", "target")] and 'id="edit-form"' in html


@pytest.mark.parametrize(("url", "data"), [
    ("/sessions/r-1/take/", {}),
    ("/sessions/r-1/note/", {"note": "hello"}),
    ("/sessions/r-1/close/", {"note": "done"}),
    ("/sessions/r-1/revert/", {"to_version": "1", "reason": "back"}),
    ("/sessions/r-1/reset/", {"reason": "start over", "confirm": "on"}),
])
def test_plain_form_posts_still_redirect_to_the_page_and_the_page_shows_the_message(editor, chat, url, data):
    version = chat.version
    response = editor.post(url, {**data, "expected_version": str(version)})
    assert response.status_code == 302 and response["Location"] == "/sessions/r-1/"
    page = editor.get("/sessions/r-1/").content.decode()
    assert "<html" in page and 'class="alert alert-success"' in page


def test_a_plain_refused_post_gets_the_whole_page_with_the_error(editor, chat):
    response = editor.post("/sessions/r-1/reset/", {"reason": "x", "expected_version": str(chat.version)})
    html = response.content.decode()
    assert response.status_code == 400 and "<html" in html and "Tick the confirmation box" in html
    assert 'id="transcript"' in html and 'id="history"' in html


def test_the_edit_reason_is_bounded_by_the_one_reason_limit(editor, chat):
    page = editor.get("/sessions/r-1/edit/").content.decode()
    assert f'name="reason" maxlength="{REASON_MAX_CHARS}"' in page
    version = chat.version
    refused = editor.post("/sessions/r-1/edit/", edit_data(version, reason="x" * (REASON_MAX_CHARS + 1)), **HTMX)
    assert refused.status_code == 400 and "Reason: Ensure this value has at most" in refused.content.decode()
    saved = editor.post("/sessions/r-1/edit/", edit_data(version, reason="x" * REASON_MAX_CHARS), **HTMX)
    assert saved.status_code == 200
    assert Revision.objects.get(session=chat, version=version + 1).reason == "x" * REASON_MAX_CHARS
