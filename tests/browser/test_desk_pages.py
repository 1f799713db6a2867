"""The staff pages as a person in another time zone, on a phone, and in the console: times in their zone, nothing
wider than the screen at 390 px, no htmx errors."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_staff_flow import login
from tests.factories import make_session, make_user
from tests.roles import ensure_roles

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def browser_page(chromium, csp_violations):
    """A page in a browser context with the given options (time zone, viewport); console errors collected."""
    contexts = []

    def make(**options):
        context = chromium.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.console_errors = []
        page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()


def test_times_are_shown_in_the_browsers_time_zone_from_the_first_page_after_login(live_server, browser_page):
    ensure_roles()
    make_user("tokyo", role="support")
    make_session("tz-page", user_id="carol", content={"summary": "Carol in Osaka."})
    page = browser_page(timezone_id="Asia/Tokyo", viewport={"width": 1280, "height": 800})
    login(page, live_server.url, "tokyo")
    page.goto(live_server.url + "/sessions/tz-page/")
    history_time = page.locator("#history time").first
    expect(history_time).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d JST$"))
    assert "(Asia/Tokyo)" in history_time.get_attribute("title")


LONG_WORD = "Refund" + "x" * 300 + "-reference-without-any-space"


def _width(page) -> tuple[int, int]:
    return tuple(page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]"))


def test_at_390_px_a_long_word_never_makes_the_pages_scroll_sideways(live_server, browser_page, artifacts_dir):
    ensure_roles()
    make_user("phone", role="editor")
    make_session("phone-1", mode="planning", user_id="carol", agent_id="bot-with-a-rather-long-agent-name", content={
        "summary": f"Carol says {LONG_WORD} twice.", "goal": LONG_WORD, "plan": [LONG_WORD, "Tell Carol"],
        "progress": []})
    page = browser_page(viewport={"width": 390, "height": 844})
    login(page, live_server.url, "phone")
    widths = {"list": _width(page)}
    page.screenshot(path=str(artifacts_dir / "phone-01-list.png"), full_page=True)
    page.goto(live_server.url + "/handoffs/")
    widths["queue"] = _width(page)
    page.goto(live_server.url + "/sessions/phone-1/")
    expect(page.locator(".session-head")).to_be_visible()
    widths["detail"] = _width(page)
    page.screenshot(path=str(artifacts_dir / "phone-02-detail.png"), full_page=True)
    page.locator("[data-action=edit]").click()
    expect(page.locator("#edit-form")).to_be_visible()
    widths["edit form"] = _width(page)
    page.screenshot(path=str(artifacts_dir / "phone-03-edit.png"), full_page=True)
    # (page width, window width) for each page: none wider than the window.
    assert {name: w for name, w in widths.items() if w[0] > w[1]} == {}


def test_the_list_page_logs_no_errors_in_the_console(live_server, browser_page):
    ensure_roles()
    make_user("console", role="support")
    make_session("console-1", user_id="carol", content={"summary": "Carol."})
    page = browser_page(viewport={"width": 1280, "height": 800})
    login(page, live_server.url, "console")
    page.get_by_label("Search").fill("carol")
    expect(page).to_have_url(re.compile(r"q=carol"))
    assert page.console_errors == []


def test_the_transcript_opens_at_the_newest_message_and_reaches_the_first(live_server, browser_page):
    from contexts import services

    ensure_roles()
    make_user("reader", role="support")
    session = make_session("long-talk", user_id="carol")
    for start in range(0, 230, 50):
        services.messages_append(session=session, messages=[
            {"role": "user", "content": f"message number {i + 1}"} for i in range(start, min(start + 50, 230))])
    page = browser_page(viewport={"width": 1280, "height": 800})
    login(page, live_server.url, "reader")
    page.goto(live_server.url + "/sessions/long-talk/")
    # The page to the transcript's top, leaving the list's own scrolling as the page set it.
    page.locator("#transcript").evaluate("t => t.scrollIntoView({block: 'start'})")
    newest = page.locator("#transcript [data-seq='230']")
    expect(newest).to_be_in_viewport()
    at_end = "l => l.scrollTop + l.clientHeight >= l.scrollHeight - 2"
    assert page.locator("[data-transcript]").evaluate(at_end)

    page.get_by_role("link", name="Load earlier messages").click()
    first = page.locator("#transcript [data-seq='1']")
    expect(first).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/sessions/long-talk/$"))  # loaded in place
    assert page.locator("#transcript [data-seq]").count() == 230
    first.scroll_into_view_if_needed()
    expect(first).to_contain_text("message number 1")
    expect(page.get_by_role("link", name="Load earlier messages")).to_have_count(0)

    # A message arriving while the person reads the first ones: the live check adds it and keeps them.
    services.messages_append(session=session, messages=[{"role": "user", "content": "message number 231"}])
    expect(page.locator("#transcript [data-seq='231']")).to_have_count(1, timeout=5_000)
    assert page.locator("#transcript [data-seq]").count() == 231
    expect(first).to_be_in_viewport()


def test_signing_in_again_in_another_tab_then_acting_asks_to_reload_and_keeps_the_text(live_server, browser_page):
    ensure_roles()
    make_user("twotabs", role="support")
    make_session("csrf-tab", user_id="carol")
    page = browser_page(viewport={"width": 1280, "height": 800})
    login(page, live_server.url, "twotabs")
    page.goto(live_server.url + "/sessions/csrf-tab/")
    page.locator("[data-field=note]").fill("A note typed before the other tab signed in again")

    other = page.context.new_page()
    other.goto(live_server.url + "/")
    other.get_by_role("button", name="Log out").click()
    login(other, live_server.url, "twotabs")  # a new CSRF secret for the browser

    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#flash")).to_contain_text("reload the page")
    expect(page.locator("[data-field=note]")).to_have_value("A note typed before the other tab signed in again")
    expect(page.locator("body")).not_to_contain_text("CSRF verification failed")
    expect(page).to_have_url(re.compile(r"/sessions/csrf-tab/$"))


def test_the_plan_on_the_session_page_does_not_look_like_checkboxes(live_server, browser_page):
    ensure_roles()
    make_user("looker", role="support")
    make_session("plan-look", mode="planning", user_id="carol", content={
        "summary": "s", "goal": "g", "plan": ["Check", "Refund", "Tell Carol"], "progress": ["Check"]})
    page = browser_page(viewport={"width": 1280, "height": 800})
    login(page, live_server.url, "looker")
    page.goto(live_server.url + "/sessions/plan-look/")
    marks = page.locator("[data-field=plan] li > span:first-child")
    expect(marks).to_have_text(["✓", "2", "3"])  # done, or the step's number: never an empty box
    style = marks.nth(1).evaluate("m => [getComputedStyle(m).borderTopWidth, getComputedStyle(m).cursor]")
    assert style == ["0px", "auto"]
    assert page.locator("[data-field=plan] input, [data-field=plan] [role=checkbox]").count() == 0
