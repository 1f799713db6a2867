"""A refused CSRF token inside an htmx action (the person signed in again in another tab, which changes the token)
says so in the page and keeps what was typed; never Django's CSRF page inside a panel."""

from __future__ import annotations

import pytest
from django.test import Client

from contexts.models import HandoffEvent
from tests.factories import make_session
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


@pytest.fixture
def stale_page(support_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(support_user)
    make_session("csrf-2")
    page = client.get("/sessions/csrf-2/").content.decode()
    token = page.split('hx-headers=\'{"X-CSRFToken": "', 1)[1].split('"', 1)[0]
    # Signing in again in another tab gives the browser a new CSRF secret; this page still holds the old token.
    client.logout()
    client.cookies.pop("csrftoken", None)
    client.force_login(support_user)
    client.get("/sessions/csrf-2/")
    return client, token


def test_an_htmx_action_with_a_stale_token_asks_to_reload_in_the_page_and_swaps_nothing(stale_page):
    client, token = stale_page
    refused = client.post("/sessions/csrf-2/note/", {"note": "a long note typed before"},
                          HTTP_X_CSRFTOKEN=token, **HTMX)
    html = refused.content.decode()
    assert refused.status_code == 403 and not HandoffEvent.objects.exists()
    assert refused["HX-Reswap"] == "none"  # the form, and the text typed into it, stay as they are
    assert 'id="flash"' in html and 'hx-swap-oob="innerHTML"' in html
    assert "reload the page" in html and "CSRF verification failed" not in html and "<html" not in html


def test_a_plain_post_with_a_stale_token_still_gets_djangos_page(stale_page):
    client, token = stale_page
    refused = client.post("/sessions/csrf-2/note/", {"note": "hi", "csrfmiddlewaretoken": "x" * 32})
    assert refused.status_code == 403 and "CSRF verification failed" in refused.content.decode()
