"""The staff pages in a real browser: log in, filter, open, take, note, edit the plan, hand back, conflict."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from contexts import services
from contexts.models import HandoffEvent, Revision, SessionContext
from contexts.services import Actor
from tests.factories import make_session, make_user
from tests.roles import ensure_roles

# serialized_rollback puts back the role groups (made by a data migration) that the flush removes.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "pw-for-tests-1"
# Screenshots keep the caret: hiding it leaves style="" on every input, which htmx then copies onto swapped
# elements, and the Content-Security-Policy (style-src 'self') rightly refuses that (see conftest.csp_violations).


def login(page, base_url: str, username: str) -> None:
    page.goto(base_url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()


@pytest.fixture
def seeded(db):
    ensure_roles()
    for i in range(8):
        make_session(f"trip-{i}", user_id=f"user-{i}", agent_id="travel-bot",
                     content={"summary": f"Planning trip number {i}.", "goal": f"Trip {i}", "plan": ["Flights"]})
    refund = make_session("billing-refund-42", mode="planning", user_id="carol", agent_id="support-bot", content={
        "summary": "Carol was charged twice and wants a refund.",
        "goal": "Refund the double charge",
        "plan": ["Verify the charges", "Issue the refund", "Confirm with Carol"],
        "progress": ["Verify the charges"],
    })
    services.messages_append(session=refund, messages=[
        {"role": "user", "content": "I was charged twice this month."},
        {"role": "assistant", "content": "Let me get a person to help with the refund."},
    ])
    services.handoff_request(session=refund, reason="Refunds need a human.", actor=Actor.system("agent"))
    make_user("eve", role="editor")
    make_user("ed", role="editor")
    return refund


def test_support_flow_filter_open_take_note_edit_plan_hand_back(live_server, new_page, seeded, artifacts_dir):
    page = new_page()
    login(page, live_server.url, "eve")
    expect(page.locator("#session-table tbody tr")).to_have_count(9)
    page.screenshot(path=str(artifacts_dir / "sessions.png"), full_page=True, caret="initial")

    # "/" jumps to the search box; filtering updates the table in place and the URL can be bookmarked.
    page.locator("body").press("/")
    search = page.get_by_placeholder(re.compile("Search session id"))
    expect(search).to_be_focused()
    search.fill("refund")
    expect(page.locator("#session-table tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=refund"))
    page.get_by_label("Needs a human").check()
    expect(page).to_have_url(re.compile(r"needs_human=on"))
    expect(page.locator("#session-table tbody tr")).to_have_count(1)
    expect(page.locator("#session-table")).to_contain_text("1/3")

    # The handoff queue lists it with its reason; Take leads to the session, now ours.
    page.get_by_role("link", name=re.compile("Handoff queue")).click()
    expect(page.locator("#handoff-queue")).to_contain_text("Refunds need a human.")
    page.screenshot(path=str(artifacts_dir / "handoff-queue.png"), full_page=True, caret="initial")
    page.locator("#handoff-queue").get_by_role("button", name="Take").click()
    expect(page).to_have_url(re.compile(r"/sessions/billing-refund-42/$"))
    expect(page.locator(".session-head .badge")).to_have_text("Human")
    expect(page.locator(".session-head")).to_contain_text("eve (you)")

    page.locator("[data-field=note]").fill("Checked the payment provider: two charges on the 3rd.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator(".timeline")).to_contain_text("two charges on the 3rd")

    # Cancel brings the context back in place of the form; the rest of the page is not rendered again.
    page.evaluate("document.getElementById('transcript').dataset.kept = 'yes'")
    page.get_by_role("link", name="Edit context").click()
    expect(page.locator("#edit-form")).to_be_visible()
    page.locator("#edit-form").get_by_role("link", name="Cancel").click()
    expect(page.locator("#context")).to_be_visible()
    expect(page.locator("#edit-form")).to_have_count(0)

    # Edit the plan: tick a step, add one, move it to the top, remove another.
    page.get_by_role("link", name="Edit context").click()
    form = page.locator("#edit-form")
    expect(form).to_be_visible()
    form.get_by_label("Step 2 done").check()
    form.get_by_role("button", name="+ Add step").click()
    form.locator("[name=step_text]").last.fill("Apologise to Carol")
    added = form.locator(".plan-row:has([name=step_id][value^='n']:not([value='new']))")
    for _ in range(4):
        added.get_by_role("button", name="Move step up").click()
    form.locator(".plan-row").nth(3).get_by_role("button", name="Remove step").click()  # "Confirm with Carol"
    page.screenshot(path=str(artifacts_dir / "session-edit.png"), full_page=True, caret="initial")
    form.get_by_role("button", name=re.compile("Save")).click()
    expect(page.locator(".messages")).to_contain_text("Saved as version")
    expect(page.locator(".checklist li")).to_have_text([re.compile("Apologise to Carol$"),
                                                         re.compile("Verify the charges \\(done\\)"),
                                                         re.compile("Issue the refund \\(done\\)")])
    expect(page.locator("#context")).to_contain_text("2/3")
    # The save swapped the snapshot panel and, out of band, the head and the history; the transcript stayed.
    expect(page.locator(".session-head")).to_contain_text(re.compile(r"version \d+"))
    expect(page.locator("#history .rev").first).to_contain_text("current")
    expect(page.locator("#history .rev").first).to_contain_text("user:eve")
    expect(page.locator("#transcript[data-kept=yes]")).to_have_count(1)
    session = SessionContext.objects.get(session_id="billing-refund-42")
    assert session.plan == ["Apologise to Carol", "Verify the charges", "Issue the refund"]
    assert session.progress == ["Verify the charges", "Issue the refund"]
    staff_rev = Revision.objects.get(session=session, version=session.version)
    assert staff_rev.source == "staff" and staff_rev.actor == "user:eve"

    # Hand back with a note the agent will read.
    page.locator("[data-field=release-note]").fill("Refund issued; tell Carol it takes 3 days.")
    page.get_by_role("button", name="Hand back to agent").click()
    expect(page.locator(".session-head .badge")).to_have_text("Active")
    expect(page.locator("[data-field=handoff_note]")).to_contain_text("Refund issued; tell Carol it takes 3 days.")
    page.screenshot(path=str(artifacts_dir / "session-detail.png"), full_page=True, caret="initial")
    kinds = list(HandoffEvent.objects.filter(session=session).values_list("kind", flat=True))
    assert kinds == ["requested", "claimed", "note", "released"]


def test_a_stale_edit_in_a_second_browser_shows_the_conflict(live_server, new_page, seeded, artifacts_dir):
    first, second = new_page(), new_page()
    login(first, live_server.url, "eve")
    login(second, live_server.url, "ed")
    url = live_server.url + "/sessions/billing-refund-42/edit/"
    first.goto(url)
    second.goto(url)

    first.get_by_role("textbox", name="Summary").fill("Eve's summary: refund approved.")
    first.get_by_role("button", name=re.compile(r"^Save \(version")).click()
    expect(first.locator(".messages")).to_contain_text("Saved as version")

    second.get_by_role("textbox", name="Summary").fill("Ed's summary, written on a stale page.")
    second.get_by_role("button", name=re.compile(r"^Save \(version")).click()
    conflict = second.locator(".conflict")
    expect(conflict).to_contain_text("Someone else changed this context")
    # The form now holds the newer version, and nothing of Ed's was written.
    expect(second.get_by_role("textbox", name="Summary")).to_have_value("Eve's summary: refund approved.")
    second.screenshot(path=str(artifacts_dir / "edit-conflict.png"), full_page=True, caret="initial")
    session = SessionContext.objects.get(session_id="billing-refund-42")
    assert session.summary == "Eve's summary: refund approved."
    assert not Revision.objects.filter(session=session, actor="user:ed").exists()


def test_keyboard_focus_survives_the_list_refresh(live_server, new_page, seeded):
    page = new_page()
    login(page, live_server.url, "eve")
    link = page.locator("#session-table").get_by_role("link", name="trip-3")
    link.focus()
    page.evaluate("document.getElementById('session-table').dataset.old = 'yes'")
    expect(page.locator("#session-table[data-old]")).to_have_count(0, timeout=15_000)  # the 10 s refresh came
    expect(page.locator("#session-table").get_by_role("link", name="trip-3")).to_be_focused()
