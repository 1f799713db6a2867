from __future__ import annotations

import pytest

from contexts import services
from contexts.models import HandoffEvent, Revision
from contexts.services import Actor
from tests.factories import make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting():
    session = make_session("h-1", user_id="carol", content={"summary": "Needs a refund", "plan": ["Check", "Refund"]})
    return services.handoff_request(session=session, reason="Refunds need a human.", actor=Actor.system("agent"))


def test_queue_lists_waiting_sessions_oldest_first_with_reason_and_wait(support):
    for sid in ("q-old", "q-new"):
        s = make_session(sid)
        services.handoff_request(session=s, reason=f"reason of {sid}", actor=Actor.system("agent"))
    make_session("q-active")
    html = support.get("/handoffs/").content.decode()
    assert html.index("q-old") < html.index("q-new") and "q-active" not in html
    assert "reason of q-old" in html and "minutes" in html
    partial = support.get("/handoffs/", **HTMX).content.decode()
    assert partial.lstrip().startswith('<div id="handoff-queue"') and "<html" not in partial


def test_queue_empty_state(support):
    assert "Nobody is waiting" in support.get("/handoffs/").content.decode()


def test_take_from_the_queue_claims_it_and_opens_the_session(support, support_user, waiting):
    response = support.post("/sessions/h-1/take/", {"from": "queue"}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == "/sessions/h-1/"
    waiting.refresh_from_db()
    assert waiting.status == "human" and waiting.assignee == support_user
    event = HandoffEvent.objects.filter(session=waiting).last()
    assert event.kind == "claimed" and event.actor_user == support_user
    assert Revision.objects.get(session=waiting, version=waiting.version).actor == "user:sam-support"
    html = support.get("/sessions/h-1/").content.decode()
    assert "You have taken this conversation" in html and "sam-support (you)" in html


def test_the_second_person_taking_sees_who_has_it_and_nothing_changes(support, support_user, waiting):
    other = make_user("olga", role="support")
    services.handoff_claim(session=waiting, actor=Actor.for_user(other))
    waiting.refresh_from_db()
    version = waiting.version
    response = support.post("/sessions/h-1/take/", {"from": "queue"}, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="handoff-queue"')
    assert "olga has already taken this conversation." in html
    waiting.refresh_from_db()
    assert waiting.assignee == other and waiting.version == version
    # From the detail page, a plain post shows the full page with the same message.
    plain = support.post("/sessions/h-1/take/")
    assert plain.status_code == 409 and "<html" in plain.content.decode()
    assert "olga has already taken this conversation." in plain.content.decode()


def test_add_note_writes_a_handoff_event_by_me(support, support_user, waiting):
    response = support.post("/sessions/h-1/note/", {"note": "Called the bank."}, **HTMX)
    assert response.status_code == 200
    # Only the timeline it changed (and the messages), not the whole session body.
    assert response.content.decode().lstrip().startswith('<section id="handoff-timeline"')
    assert 'id="session-body"' not in response.content.decode()
    assert "Called the bank." in response.content.decode()
    note = HandoffEvent.objects.get(session=waiting, kind="note")
    assert note.note == "Called the bank." and note.actor_user == support_user


def test_an_empty_note_is_refused_with_a_message(support, waiting):
    response = support.post("/sessions/h-1/note/", {"note": "  "}, **HTMX)
    assert response.status_code == 400 and "Note: This field is required." in response.content.decode()
    assert not HandoffEvent.objects.filter(session=waiting, kind="note").exists()


def test_hand_back_writes_a_note_into_the_snapshot_and_the_audit(support, waiting):
    support.post("/sessions/h-1/take/")
    response = support.post("/sessions/h-1/release/", {"note": "Refund issued."})
    assert response.status_code == 302 and response["Location"] == "/sessions/h-1/"
    waiting.refresh_from_db()
    assert waiting.status == "active" and waiting.assignee is None
    assert "sam-support" in waiting.handoff_note and "Refund issued." in waiting.handoff_note
    revision = Revision.objects.get(session=waiting, version=waiting.version)
    assert revision.actor == "user:sam-support" and "handoff_note" in revision.changed_fields
    assert HandoffEvent.objects.filter(session=waiting).last().kind == "released"


def test_hand_back_without_taking_is_a_conflict(support, waiting):
    response = support.post("/sessions/h-1/release/", {"note": "x"}, **HTMX)
    assert response.status_code == 409 and "Only a conversation a person has taken" in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.status == "handoff_requested"


def test_close_ends_the_conversation(support, waiting):
    response = support.post("/sessions/h-1/close/", {"note": "Resolved by phone"}, **HTMX)
    assert response.status_code == 200 and "Conversation closed." in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.status == "closed"
    assert HandoffEvent.objects.filter(session=waiting).last().note == "Resolved by phone"

    # A second page, open before, closes it again with its own note: told so, not "Conversation closed."
    again = support.post("/sessions/h-1/close/", {"note": "Customer happy"}, **HTMX)
    assert again.status_code == 409 and "your note was not added" in again.content.decode()
    assert HandoffEvent.objects.filter(session=waiting).last().note == "Resolved by phone"


# --- editing -----------------------------------------------------------------------------------------


def edit_data(version: int, **over) -> dict:
    data = {"version": str(version), "summary": "New summary", "goal": "New goal", "other_progress": "",
            "step_id": ["r1", "r2", "n-x", "new"], "step_text": ["Refund", "Check", "Email Carol", ""],
            "step_done": ["r2"], "reason": "fixed the plan"}
    data.update(over)
    return data


def test_edit_saves_summary_goal_and_reordered_plan_as_a_staff_revision(editor, editor_user, waiting):
    version = waiting.version
    response = editor.post("/sessions/h-1/edit/", edit_data(version), **HTMX)
    assert response.status_code == 200 and f"Saved as version {version + 1}." in response.content.decode()
    waiting.refresh_from_db()
    assert (waiting.summary, waiting.goal) == ("New summary", "New goal")
    assert waiting.plan == ["Refund", "Check", "Email Carol"] and waiting.progress == ["Check"]
    revision = Revision.objects.get(session=waiting, version=version + 1)
    assert revision.source == "staff" and revision.actor_user == editor_user and revision.reason == "fixed the plan"


def test_a_stale_edit_is_refused_shows_the_newer_version_and_overwrites_nothing(editor, waiting):
    loaded_at = waiting.version
    services.snapshot_update(session=waiting, expected_version=loaded_at, changes={"summary": "Agent's newer text"},
                             source="api", actor=Actor.system("agent"))
    response = editor.post("/sessions/h-1/edit/", edit_data(loaded_at, summary="My stale text"), **HTMX)
    assert response.status_code == 412
    html = response.content.decode()
    assert "Someone else changed this context" in html
    assert f'name="version" value="{loaded_at + 1}"' in html  # the form now carries the newer version
    assert "Agent&#x27;s newer text</textarea>" in html
    assert "My stale text" in html  # kept aside so the editor can apply it again
    waiting.refresh_from_db()
    assert waiting.summary == "Agent's newer text" and waiting.version == loaded_at + 1
    assert not Revision.objects.filter(session=waiting, source="staff").exists()


def test_invalid_edit_keeps_the_input_and_changes_nothing(editor, waiting, settings):
    settings.SESSIONCTX_MAX_SUMMARY_CHARS = 10
    version = waiting.version
    response = editor.post("/sessions/h-1/edit/", edit_data(version, summary="far too long a summary"), **HTMX)
    assert response.status_code == 400 and "The context is not valid" in response.content.decode()
    assert "far too long a summary" in response.content.decode() and "Email Carol" in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.version == version and waiting.summary == "Needs a refund"


def test_a_refused_edit_that_removed_every_step_shows_no_steps_not_the_old_plan(editor, waiting, settings):
    settings.SESSIONCTX_MAX_SUMMARY_CHARS = 10
    data = edit_data(waiting.version, summary="far too long a summary", step_id=["new"], step_text=[""], step_done=[])
    response = editor.post("/sessions/h-1/edit/", data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 400 and "far too long a summary" in html
    # The form shows the plan as the person left it (empty): "Check" and "Refund" back would be saved again.
    assert 'value="Check"' not in html and 'value="Refund"' not in html
    waiting.refresh_from_db()
    assert waiting.plan == ["Check", "Refund"]


def test_revert_restores_an_old_version_as_a_new_revision(editor, editor_user, waiting):
    waiting = services.snapshot_update(session=waiting, expected_version=waiting.version,
                                       changes={"summary": "Wrong"}, source="api", actor=Actor.system("agent"))
    current = waiting.version
    response = editor.post("/sessions/h-1/revert/", {"to_version": "1", "expected_version": str(current),
                                                     "reason": "agent got it wrong"}, **HTMX)
    assert response.status_code == 200 and f"Restored version 1 as version {current + 1}." in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.summary == "Needs a refund" and waiting.version == current + 1
    revision = Revision.objects.get(session=waiting, version=current + 1)
    assert revision.source == "staff" and revision.actor_user == editor_user
    assert revision.reason == "Reverted to version 1: agent got it wrong"


def test_a_revert_or_reset_that_changes_nothing_says_so(editor, waiting):
    # "Restored version 1 as version 1." and "Context reset (version 2)" were said of saves that made no version.
    version = waiting.version
    same = editor.post("/sessions/h-1/revert/", {"to_version": str(version), "expected_version": str(version),
                                                 "reason": "check"}, **HTMX)
    assert same.status_code == 200 and "Nothing changed" in same.content.decode()
    data = {"reason": "start over", "confirm": "on"}
    assert "Context reset" in editor.post("/sessions/h-1/reset/", {**data, "expected_version": str(version)},
                                          **HTMX).content.decode()
    again = editor.post("/sessions/h-1/reset/", {**data, "expected_version": str(version + 1)}, **HTMX)
    assert again.status_code == 200 and "already empty" in again.content.decode()
    waiting.refresh_from_db()
    assert waiting.version == version + 1


def test_revert_needs_a_reason(editor, waiting):
    version = waiting.version
    response = editor.post("/sessions/h-1/revert/", {"to_version": "1", "expected_version": str(version),
                                                     "reason": ""}, **HTMX)
    assert response.status_code == 400 and "Reason: This field is required." in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.version == version


def test_reset_needs_confirmation_and_reason_then_empties_the_context(editor, waiting):
    version = waiting.version
    refused = editor.post("/sessions/h-1/reset/", {"reason": "start over", "expected_version": str(version)}, **HTMX)
    assert refused.status_code == 400 and "Tick the confirmation box" in refused.content.decode()
    waiting.refresh_from_db()
    assert waiting.version == version and waiting.summary
    response = editor.post("/sessions/h-1/reset/", {"reason": "start over", "confirm": "on",
                                                    "expected_version": str(version)})
    assert response.status_code == 302
    waiting.refresh_from_db()
    assert waiting.summary == "" and waiting.plan == [] and waiting.version == version + 1
    revision = Revision.objects.get(session=waiting, version=version + 1)
    assert revision.source == "reset" and revision.reason == "start over" and revision.actor == "user:eve-editor"


def test_actions_on_a_missing_session_answer_404(editor):
    assert editor.post("/sessions/gone/take/").status_code == 404
    assert editor.post("/sessions/gone/edit/", edit_data(1)).status_code == 404


def test_get_is_not_allowed_on_actions(editor, waiting):
    assert editor.get("/sessions/h-1/take/").status_code == 405
    assert editor.get("/sessions/h-1/reset/").status_code == 405


def test_saving_an_unchanged_multi_line_summary_as_a_browser_posts_it_is_not_a_new_version(editor):
    session = make_session("crlf-1", content={"summary": "Line one\nLine two", "goal": "Refund\nthe order"})
    # A browser posts a textarea's line breaks as CRLF.
    response = editor.post("/sessions/crlf-1/edit/", {
        "version": str(session.version), "summary": "Line one\r\nLine two", "goal": "Refund\r\nthe order",
        "other_progress": "", "reason": "", "step_id": ["new"], "step_text": [""]}, **HTMX)
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.version == 1 and session.summary == "Line one\nLine two"
    # A real change is saved with plain line breaks.
    editor.post("/sessions/crlf-1/edit/", {
        "version": "1", "summary": "Line one\r\nLine three", "goal": "Refund\r\nthe order", "other_progress": "",
        "reason": "", "step_id": ["new"], "step_text": [""]}, **HTMX)
    session.refresh_from_db()
    assert (session.version, session.summary) == (2, "Line one\nLine three")
    assert Revision.objects.get(session=session, version=2).changed_fields == ["summary"]


def test_an_edit_over_a_limit_says_which_field_and_what_the_limit_is(editor, waiting, settings):
    response = editor.post("/sessions/h-1/edit/", edit_data(waiting.version, goal="x" * 1001), **HTMX)
    html = response.content.decode()
    assert response.status_code == 400
    assert "goal has 1001 characters; compress it to at most 1000" in html
    waiting.refresh_from_db()
    assert waiting.goal == ""



def test_a_plan_step_with_a_null_character_is_a_form_error_and_changes_nothing(editor, waiting):
    # The step rows are not form fields, so Django's own refusal of NUL never saw them; PostgreSQL refuses NUL in
    # jsonb (a 500), SQLite stored it.
    version = waiting.version
    data = edit_data(version, step_id=["r1", "new"], step_text=["Refund", "Check\x00 twice"], step_done=[])
    response = editor.post("/sessions/h-1/edit/", data, **HTMX)
    assert response.status_code == 400 and "null character" in response.content.decode()
    waiting.refresh_from_db()
    assert (waiting.version, waiting.plan, waiting.summary) == (version, ["Check", "Refund"], "Needs a refund")

def test_a_hand_back_note_too_long_to_keep_whole_is_refused_not_cut(support, support_user):
    session = services.handoff_claim(session=make_session("hb-1", content={"summary": "orig"}),
                                     actor=Actor.for_user(support_user))
    note = ("word " * 200)[:995] + "END."
    response = support.post("/sessions/hb-1/release/", {"note": note}, **HTMX)
    assert response.status_code == 400 and "at most" in response.content.decode()
    session.refresh_from_db()
    assert session.status == "human" and session.handoff_note == ""

    assert support.post("/sessions/hb-1/release/", {"note": note[-900:]}, **HTMX).status_code == 200
    session.refresh_from_db()
    assert session.status == "active" and session.handoff_note.endswith("END.")


@pytest.mark.parametrize(("path", "query"), [("/sessions/u-1/", {"before": "²"}),
                                             ("/sessions/u-1/live/", {"since": "x", "transcript_from": "²"})])
def test_a_digit_int_cannot_read_in_a_page_address_is_ignored_not_a_500(editor, path, query):
    session = make_session("u-1")
    services.messages_append(session=session, messages=[{"role": "user", "content": "hi"}])
    assert editor.get(path, query, **HTMX).status_code == 200



def test_a_message_number_too_long_for_int_is_ignored_not_a_500(editor, editor_user):
    # Python's int() refuses a string of over 4,300 digits (ValueError): "Load earlier" and the transcript's start
    # come back from a page address or a posted form, so anyone can send one.
    session = make_session("u-2")
    services.messages_append(session=session, messages=[{"role": "user", "content": "hi"}])
    huge = "9" * 5000
    assert editor.get("/sessions/u-2/", {"before": huge}).status_code == 200
    assert editor.get("/sessions/u-2/live/", {"since": "x", "transcript_from": huge}, **HTMX).status_code == 200
    services.handoff_claim(session=session, actor=Actor.for_user(editor_user))
    response = editor.post("/sessions/u-2/reply/", {"content": "Done.", "transcript_from": huge}, **HTMX)
    assert response.status_code == 200 and "Done." in response.content.decode()
    assert session.messages.count() == 2

def test_saving_the_edit_form_unchanged_keeps_the_order_the_steps_were_done_in_and_is_not_a_new_version(editor):
    # The agent did step Two before One; the progress list records that order, which the plan rows cannot show.
    session = make_session("order-1", content={"summary": "S", "plan": ["One", "Two", "Three"],
                                               "progress": ["Two", "called the bank", "One"]})
    form = editor.get("/sessions/order-1/edit/", **HTMX).content.decode()
    assert 'value="called the bank"' not in form and "called the bank</textarea>" in form  # other progress
    unchanged = {"version": "1", "summary": "S", "goal": "", "other_progress": "called the bank", "reason": "",
                 "step_id": ["r1", "r2", "r3", "new"], "step_text": ["One", "Two", "Three", ""],
                 "step_done": ["r1", "r2"]}
    assert editor.post("/sessions/order-1/edit/", unchanged, **HTMX).status_code == 200
    session.refresh_from_db()
    assert session.version == 1 and session.progress == ["Two", "called the bank", "One"]
    assert Revision.objects.filter(session=session).count() == 1
    # Ticking Three adds it after what was done before, in the order it was done.
    assert editor.post("/sessions/order-1/edit/", {**unchanged, "step_done": ["r1", "r2", "r3"]},
                       **HTMX).status_code == 200
    session.refresh_from_db()
    assert session.version == 2 and session.progress == ["Two", "called the bank", "One", "Three"]
    assert Revision.objects.get(session=session, version=2).changed_fields == ["progress"]


def test_saving_the_edit_form_unchanged_keeps_a_step_with_a_line_break_and_says_nothing_changed(editor):
    # An agent wrote a step over two lines; the browser's one-line input drops the break ("twolines"), and a save
    # that changed nothing rewrote the step as a new version, saying "Saved as version 2."
    session = make_session("nl-1", content={"summary": "S", "plan": ["Call the\nbank", "Refund"],
                                            "progress": ["Call the\nbank"]})
    unchanged = {"version": "1", "summary": "S", "goal": "", "other_progress": "", "reason": "",
                 "step_id": ["r1", "r2", "new"], "step_text": ["Call thebank", "Refund", ""], "step_done": ["r1"]}

    response = editor.post("/sessions/nl-1/edit/", unchanged, **HTMX)

    assert response.status_code == 200 and "Nothing changed" in response.content.decode()
    session.refresh_from_db()
    assert (session.version, session.plan, session.progress) == (1, ["Call the\nbank", "Refund"], ["Call the\nbank"])
    # Edited, the step is what was typed.
    editor.post("/sessions/nl-1/edit/", {**unchanged, "step_text": ["Call the bank today", "Refund", ""]}, **HTMX)
    session.refresh_from_db()
    assert (session.version, session.plan[0]) == (2, "Call the bank today")


@pytest.mark.parametrize("progress, other_progress", [
    (["line1\nline2", "A"], "line1\nline2"),  # an agent's item over two lines: split in two and moved
    (["A", "B", "A"], ""),  # a step done twice: the repeat was dropped
])
def test_saving_only_a_new_goal_leaves_progress_as_the_agent_wrote_it(editor, progress, other_progress):
    plan = sorted({p for p in progress if "\n" not in p})
    session = make_session("prog-1", content={"summary": "S", "plan": plan, "progress": progress})
    form = editor.get("/sessions/prog-1/edit/", **HTMX).content.decode()
    assert f"{other_progress}</textarea>" in form
    shown = {"version": "1", "summary": "S", "goal": "", "other_progress": other_progress.replace("\n", "\r\n"),
             "reason": "", "step_id": [f"r{i}" for i in range(1, len(plan) + 1)] + ["new"],
             "step_text": [*plan, ""], "step_done": [f"r{i}" for i in range(1, len(plan) + 1)]}

    assert "Nothing changed" in editor.post("/sessions/prog-1/edit/", shown, **HTMX).content.decode()
    response = editor.post("/sessions/prog-1/edit/", {**shown, "goal": "Ship it"}, **HTMX)

    assert response.status_code == 200 and "Saved as version 2." in response.content.decode()
    session.refresh_from_db()
    assert (session.goal, session.progress) == ("Ship it", progress)
    assert Revision.objects.get(session=session, version=2).changed_fields == ["goal"]
