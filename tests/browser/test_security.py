"""The strict Content-Security-Policy in a real browser: htmx, the plan editor, the admin, the API docs work."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from contexts import services
from contexts.models import ApiKey
from contexts.services import Actor
from tests.factories import make_session, make_user
from tests.roles import ensure_roles

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "pw-for-tests-1"


@pytest.fixture
def seeded(db):
    ensure_roles()
    session = make_session("csp-refund-1", mode="planning", user_id="carol", content={
        "summary": "Carol was charged twice.", "goal": "Refund", "plan": ["Verify", "Refund"]})
    services.handoff_request(session=session, reason="Refunds need a human.", actor=Actor.system("agent"))
    make_user("eve", role="editor")
    make_user("ada", superuser=True)
    return session


def watch_documents(page) -> list:
    """Every page (not asset) the browser loads, to check its headers."""
    documents = []
    page.on("response", lambda r: documents.append(r) if r.request.resource_type == "document" else None)
    return documents


def login(page, base_url: str, username: str) -> None:
    page.goto(base_url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()


def test_take_and_edit_work_under_the_policy_with_nothing_blocked(live_server, new_page, seeded, csp_violations):
    page = new_page()
    documents = watch_documents(page)
    login(page, live_server.url, "eve")
    page.get_by_placeholder(re.compile("Search session id")).fill("refund")
    expect(page.locator("#session-table tbody tr")).to_have_count(1)
    page.get_by_role("link", name=re.compile("Handoff queue")).click()
    page.locator("#handoff-queue").get_by_role("button", name="Take").click()
    expect(page.locator(".session-head")).to_contain_text("eve (you)")
    page.get_by_role("link", name="Edit context").click()
    form = page.locator("#edit-form")
    form.get_by_role("button", name="+ Add step").click()
    form.locator("[name=step_text]").last.fill("Tell Carol")
    form.get_by_role("button", name=re.compile("Save")).click()
    expect(page.locator(".messages")).to_contain_text("Saved as version")
    expect(page.locator(".checklist li").last).to_contain_text("Tell Carol")

    assert documents
    for response in documents:
        headers = response.all_headers()
        assert "script-src 'self'" in headers.get("content-security-policy", ""), response.url
        if "/accounts/login/" not in response.url:
            assert "no-store" in headers.get("cache-control", ""), response.url


def test_the_admin_and_the_api_docs_work_under_the_policy(live_server, new_page, seeded, csp_violations):
    page = new_page()
    documents = watch_documents(page)
    login(page, live_server.url, "ada")
    page.goto(live_server.url + f"/admin/contexts/sessioncontext/{seeded.pk}/change/")
    expect(page.get_by_role("heading", name=re.compile("Change session context"))).to_be_visible()
    # The collapsed fieldset opens: the admin's own scripts run.
    page.get_by_text("Bookkeeping").click()
    expect(page.get_by_text("Cursor seq")).to_be_visible()

    page.goto(live_server.url + "/admin/contexts/apikey/add/")
    page.get_by_label("Name").fill("browser agent")
    page.get_by_role("button", name="Save", exact=True).click()
    key = ApiKey.objects.get(name="browser agent")
    expect(page.get_by_label(re.compile("Key for browser agent"))).to_have_value(re.compile(f"^sck_{key.prefix}_"))
    assert not [c for c in page.context.cookies() if c["name"] == "messages"]

    page.goto(live_server.url + "/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("sessionctx API")
    expect(page.locator(".opblock").first).to_be_visible()
    for response in documents:
        assert "default-src 'self'" in response.all_headers().get("content-security-policy", ""), response.url
