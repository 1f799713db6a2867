"""The sessions list in a real browser: a search and the table's own refresh in flight together."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_staff_flow import login
from tests.factories import make_session, make_user
from tests.roles import ensure_roles

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def seeded(db):
    ensure_roles()
    for i in range(6):
        make_session(f"trip-{i}", user_id=f"user-{i}", content={"summary": f"Planning trip number {i}."})
    make_session("billing-refund-42", user_id="carol", content={"summary": "Carol wants a refund."})
    make_user("eve", role="editor")


def test_a_slow_search_is_not_lost_to_the_tables_refresh_that_answered_first(live_server, new_page, seeded):
    page = new_page()
    page.clock.install()
    login(page, live_server.url, "eve")
    rows = page.locator("#session-table tbody tr")
    expect(rows).to_have_count(7)

    held = []  # the search's answer waits (a slow text search) until the table's refresh has answered
    page.route(re.compile(r"\?q=refund"), lambda route: held.append(route))
    page.get_by_placeholder(re.compile("Search session id")).fill("refund")
    page.clock.run_for(500)
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the search was not sent"

    page.clock.run_for(10_500)  # the table's 10 s refresh comes while the search is still running
    page.wait_for_timeout(1_500)
    held[0].continue_()
    page.wait_for_timeout(1_500)

    # What the person searched for is what the table shows, and keeps showing.
    expect(rows).to_have_count(1)
    expect(page.locator("#session-table")).to_contain_text("billing-refund-42")
    expect(page).to_have_url(re.compile(r"q=refund"))
