"""Projects on the staff pages in a real browser (#16): the switcher moves a member of two projects to the other
list, and a page of the first project keeps editing its own session after another tab switched."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from contexts import services
from contexts.models import SessionContext
from tests.browser.test_staff_flow import login
from tests.factories import make_session, make_user
from tests.roles import ensure_roles

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def two_projects(db):
    ensure_roles()
    alpha, _ = services.project_get_or_create(slug="alpha", name="Alpha team")
    zeta, _ = services.project_get_or_create(slug="zeta", name="Zeta team")
    make_session("chat-42", project=alpha, content={"summary": "Alpha summary"})
    make_session("alpha-only", project=alpha, content={"summary": "Only in alpha"})
    make_session("chat-42", project=zeta, content={"summary": "Zeta summary"})
    make_session("zeta-only", project=zeta, content={"summary": "Only in zeta"})
    bo = make_user("bo", role="editor", project=alpha)
    services.membership_set(project=zeta, user=bo, role="editor")
    return alpha, zeta


def test_the_switcher_shows_the_other_projects_list(live_server, new_page, two_projects, artifacts_dir):
    page = new_page()
    login(page, live_server.url, "bo")
    table = page.locator("#session-table")
    expect(table.get_by_role("link", name="alpha-only")).to_be_visible()
    expect(table.get_by_role("link", name="zeta-only")).to_have_count(0)
    expect(page.get_by_label("Project")).to_have_value("alpha")

    page.get_by_label("Project").select_option("zeta")
    page.get_by_role("button", name="Switch").click()

    expect(page.locator(".messages")).to_contain_text("Now working in project Zeta team.")
    expect(table.get_by_role("link", name="zeta-only")).to_be_visible()
    expect(table.get_by_role("link", name="alpha-only")).to_have_count(0)
    expect(page.get_by_label("Project")).to_have_value("zeta")
    page.screenshot(path=str(artifacts_dir / "project-switched.png"), full_page=True, caret="initial")
    table.get_by_role("link", name="chat-42").click()
    expect(page.locator("[data-field=summary]")).to_have_text("Zeta summary")


def test_a_page_of_one_project_edits_its_own_session_after_another_tab_switched(live_server, new_page, two_projects):
    first = new_page()
    login(first, live_server.url, "bo")
    first.goto(live_server.url + "/sessions/chat-42/")
    expect(first.locator("[data-field=summary]")).to_have_text("Alpha summary")

    second = first.context.new_page()  # the same person, another tab
    second.goto(live_server.url + "/")
    second.get_by_label("Project").select_option("zeta")
    second.get_by_role("button", name="Switch").click()
    expect(second.locator(".messages")).to_contain_text("Now working in project Zeta team.")

    first.get_by_role("link", name="Edit context").click()
    expect(first.get_by_role("textbox", name="Summary")).to_have_value("Alpha summary")
    first.get_by_role("textbox", name="Summary").fill("Alpha, edited in its own tab")
    first.get_by_role("button", name=re.compile(r"^Save \(version")).click()
    expect(first.locator(".messages")).to_contain_text("Saved as version")

    summaries = dict(SessionContext.objects.filter(session_id="chat-42").values_list("project__slug", "summary"))
    assert summaries == {"alpha": "Alpha, edited in its own tab", "zeta": "Zeta summary"}
