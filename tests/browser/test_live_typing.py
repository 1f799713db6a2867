"""What a person is typing on the session page survives the page's live updates (someone else changing the session)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from contexts import services
from contexts.models import Message, SessionContext
from contexts.services import Actor
from tests.browser.test_staff_flow import login
from tests.factories import make_session, make_user
from tests.roles import ensure_roles

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SESSION = "billing-refund-42"
User = get_user_model()


@pytest.fixture
def seeded(db):
    ensure_roles()
    make_session(SESSION, mode="planning", user_id="carol", content={
        "summary": "Carol was charged twice and wants a refund.", "goal": "Refund the double charge",
        "plan": ["Verify the charges", "Issue the refund"]})
    agent_writes("Carol was charged twice; the agent checks the charges.")
    make_user("eve", role="editor")
    make_user("ed", role="editor")


def agent_writes(summary: str) -> SessionContext:
    session = SessionContext.objects.get(session_id=SESSION)
    return services.snapshot_update(session=session, expected_version=session.version, changes={"summary": summary},
                                    source="api", actor=Actor.system("agent"))


def test_a_half_typed_reset_or_restore_reason_stays_when_the_agent_writes_a_version(live_server, new_page, seeded):
    page = new_page()
    login(page, live_server.url, "eve")
    page.goto(live_server.url + f"/sessions/{SESSION}/")
    first = page.locator("#history .rev").last
    first.get_by_text("Restore this version…").click()
    first.get_by_placeholder("Reason (required)").fill("back to what Carol first asked")
    page.get_by_text("Reset context…").click()
    page.get_by_label("Reason (required)").fill("Carol wants to start over")

    written = agent_writes("The agent wrote a new version meanwhile.")
    expect(page.locator(".session-head")).to_contain_text(f"version {written.version}", timeout=8_000)

    # The regions came back with the new version, and the forms as the person left them.
    expect(page.locator("#reset-panel details")).to_have_attribute("open", "")
    expect(page.get_by_label("Reason (required)")).to_have_value("Carol wants to start over")
    expect(page.get_by_label("Reason (required)")).to_be_focused()
    restore = page.locator("#history .rev").last
    expect(restore.locator("details")).to_have_attribute("open", "")
    expect(restore.get_by_placeholder("Reason (required)")).to_have_value("back to what Carol first asked")

    # The reset then goes through, against the version now shown.
    page.get_by_label("I understand this empties the context").check()
    page.get_by_role("button", name="Reset the context").click()
    expect(page.locator(".messages")).to_contain_text("Context reset")
    session = SessionContext.objects.get(session_id=SESSION)
    assert session.version == written.version + 1 and session.summary == ""


def test_a_reset_refused_because_the_agent_wrote_first_keeps_its_reason_to_send_again(live_server, new_page, seeded):
    page = new_page()
    login(page, live_server.url, "eve")
    page.goto(live_server.url + f"/sessions/{SESSION}/")
    page.route(re.compile(r"/live/"), lambda route: route.fulfill(status=204))  # its next check has not come yet
    page.get_by_text("Reset context…").click()
    page.get_by_label("Reason (required)").fill("Carol wants to start over")
    page.get_by_label("I understand this empties the context").check()
    written = agent_writes("The agent wrote a new version meanwhile.")

    page.get_by_role("button", name="Reset the context").click()

    # Refused (the page showed an older version): the agent's version is shown, the reset form as it was left.
    expect(page.locator(".messages")).to_contain_text(f"at version {written.version}, not")
    expect(page.locator("#snapshot-panel")).to_contain_text("The agent wrote a new version meanwhile.")
    expect(page.locator("#reset-panel details")).to_have_attribute("open", "")
    expect(page.get_by_label("Reason (required)")).to_have_value("Carol wants to start over")
    assert SessionContext.objects.get(session_id=SESSION).version == written.version

    page.get_by_role("button", name="Reset the context").click()
    expect(page.locator(".messages")).to_contain_text("Context reset")
    session = SessionContext.objects.get(session_id=SESSION)
    assert session.version == written.version + 1 and session.summary == ""
    assert session.revisions.get(version=session.version).reason == "Carol wants to start over"


def test_a_reply_being_typed_stays_when_someone_takes_the_conversation_over(live_server, new_page, seeded):
    page = new_page()
    login(page, live_server.url, "eve")
    page.goto(live_server.url + f"/sessions/{SESSION}/")
    page.get_by_role("button", name="Take").click()
    expect(page.locator(".session-head")).to_contain_text("eve (you)")
    page.get_by_label("Reply to the customer").fill("Carol, the second charge is refunded: you will see it in")

    session = SessionContext.objects.get(session_id=SESSION)
    services.handoff_take_over(session=session, actor=Actor.for_user(User.objects.get(username="ed")),
                               expected_owner="eve")
    expect(page.locator("[data-field=owner]")).to_contain_text("ed owns this conversation", timeout=8_000)

    # The half-typed reply did not vanish; sending it says why it was not sent and keeps it to copy.
    reply = page.get_by_label("Reply to the customer")
    expect(reply).to_have_value("Carol, the second charge is refunded: you will see it in")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("[data-field=unsent-reply]")).to_have_text(
        "Carol, the second charge is refunded: you will see it in")
    assert not Message.objects.filter(session=session, author__isnull=False).exists()


def test_the_keyboard_lands_in_the_form_after_edit_and_back_on_edit_after_save_or_cancel(live_server, new_page,
                                                                                        seeded):
    page = new_page()
    login(page, live_server.url, "eve")
    page.goto(live_server.url + f"/sessions/{SESSION}/")
    edit = page.get_by_role("link", name="Edit context")
    edit.focus()
    page.keyboard.press("Enter")
    summary = page.get_by_role("textbox", name="Summary")
    expect(summary).to_be_focused()

    page.keyboard.press("Control+a")
    page.keyboard.type("Refund issued on the 4th.")
    page.get_by_role("button", name=re.compile(r"^Save \(version")).focus()
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("Saved as version")
    expect(edit).to_be_focused()

    page.keyboard.press("Enter")
    expect(summary).to_be_focused()
    page.get_by_role("link", name="Cancel").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#edit-form")).to_have_count(0)
    expect(edit).to_be_focused()


def test_a_version_written_just_before_a_note_still_reaches_the_page(live_server, new_page, seeded):
    page = new_page()
    login(page, live_server.url, "eve")
    page.goto(live_server.url + f"/sessions/{SESSION}/")
    shown = SessionContext.objects.get(session_id=SESSION).version
    expect(page.locator(".session-head")).to_contain_text(f"version {shown}")

    # The agent writes a version, and before the page's next live check the person adds a note.
    page.route(re.compile(r"/live/"), lambda route: route.fulfill(status=204))
    written = agent_writes("Carol confirmed the card ending 4242.")
    page.get_by_label("Add a note").fill("Called the bank.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator(".timeline")).to_contain_text("Called the bank.")
    page.unroute(re.compile(r"/live/"))

    # The live check then brings the version the note's answer did not show.
    expect(page.locator(".session-head")).to_contain_text(f"version {written.version}", timeout=8_000)
    expect(page.locator("[data-field=summary]")).to_have_text("Carol confirmed the card ending 4242.")


def test_the_keyboard_stays_in_the_actions_after_take_and_hand_back(live_server, new_page, seeded):
    page = new_page()
    login(page, live_server.url, "eve")
    page.goto(live_server.url + f"/sessions/{SESSION}/")
    page.get_by_role("button", name="Take").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".session-head")).to_contain_text("eve (you)")
    note = page.get_by_placeholder("What you did, for the agent")
    expect(note).to_be_focused()

    page.keyboard.type("Refund issued.")
    page.keyboard.press("Enter")
    expect(page.locator(".session-head .badge")).to_have_text("Active")
    expect(page.locator("#session-actions").get_by_role("button", name="Take")).to_be_focused()
