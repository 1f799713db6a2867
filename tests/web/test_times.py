"""Times on the staff pages and the admin: in the viewer's time zone (the cookie app.js sets from the browser), with
the zone shown, the absolute time in a tooltip, one format everywhere, and never "0 minutes ago"."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from contexts import services
from contexts.models import SessionContext
from contexts.services import Actor
from tests.factories import make_session

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 1, 15, 13, 5, 9, tzinfo=dt.UTC)  # 14:05 in Berlin (CET), 08:05 in New York (EST)


@pytest.fixture
def waiting():
    session = make_session("tz-1", user_id="carol", content={"summary": "Carol wants a refund."})
    services.messages_append(session=session, messages=[{"role": "user", "content": "I was charged twice"}])
    session = services.handoff_request(session=session, reason="refund", actor=Actor.system("agent"))
    SessionContext.objects.filter(pk=session.pk).update(updated_at=AT, handoff_requested_at=AT)
    session.messages.update(created_at=AT)
    session.revisions.update(created_at=AT)
    return session


def test_the_session_page_shows_times_in_the_viewers_zone_with_the_zone_and_a_tooltip(support, waiting):
    support.cookies["tz"] = "Europe/Berlin"
    html = support.get("/sessions/tz-1/").content.decode()
    assert "2026-01-15 14:05 CET" in html  # the transcript and the history: the viewer's clock, zone named
    assert "2026-01-15 13:05" not in html and " UTC" not in html
    # Relative times carry the absolute one in their tooltip.
    assert re.search(r'<time datetime="2026-01-15T13:05:09\+00:00" title="2026-01-15 14:05:09 CET \(Europe/Berlin\)">'
                     r"[^<]* ago</time>", html)


def test_the_queue_and_the_list_use_the_same_format(support, waiting):
    support.cookies["tz"] = "America/New_York"
    for path in ("/", "/handoffs/"):
        html = support.get(path).content.decode()
        assert 'title="2026-01-15 08:05:09 EST (America/New_York)"' in html, path
        assert " UTC" not in html, path


def test_an_unknown_zone_falls_back_to_utc_and_says_so(support, waiting):
    support.cookies["tz"] = "Mars/Olympus_Mons"
    response = support.get("/sessions/tz-1/")
    assert response.status_code == 200 and "2026-01-15 13:05 UTC" in response.content.decode()


def test_something_that_just_happened_is_just_now_never_0_minutes_ago(support, waiting):
    SessionContext.objects.filter(pk=waiting.pk).update(updated_at=timezone.now(),
                                                        handoff_requested_at=timezone.now())
    for path in ("/", "/handoffs/", "/sessions/tz-1/"):
        html = support.get(path).content.decode()
        assert "0 minutes" not in html and "just now" in html, path


def test_the_admin_shows_times_in_the_same_format_and_zone(superuser, waiting):
    superuser.cookies["tz"] = "Europe/Berlin"
    html = superuser.get(f"/admin/contexts/sessioncontext/{waiting.pk}/change/").content.decode()
    assert "2026-01-15 14:05 CET" in html
    listing = superuser.get("/admin/contexts/sessioncontext/").content.decode()
    assert "2026-01-15 14:05 CET" in listing


def test_the_admins_disabled_webhook_notice_uses_the_same_format_and_zone(superuser, settings):
    from contexts.models import WebhookEndpoint
    from contexts.services.webhooks import webhook_endpoint_create

    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    endpoint = webhook_endpoint_create(url="http://127.0.0.1:9/hook")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False, disabled_at=AT, disabled_reason="gone.")
    superuser.cookies["tz"] = "Europe/Berlin"
    page = superuser.get("/admin/contexts/webhookendpoint/").content.decode()
    assert "was disabled on 2026-01-15 14:05 CET" in page


def test_the_api_answers_in_utc_whatever_time_zone_cookie_a_browser_sends(client, read_key, waiting):
    _key, raw_key = read_key
    client.cookies["tz"] = "Europe/Berlin"
    context = client.get("/api/v1/sessions/tz-1/context", HTTP_AUTHORIZATION=f"Bearer {raw_key}").json()
    assert context["updated_at"].startswith("2026-01-15T13:05:09") and context["updated_at"].endswith("Z")


@pytest.mark.parametrize("zone", ["Europe", "Europe/", "../etc", "Nowhere/Else"])
def test_a_time_zone_cookie_that_names_no_zone_shows_utc_on_every_page(support, zone):
    from django.test import Client

    support.cookies["tz"] = zone
    assert support.get("/").status_code == 200
    anonymous = Client()
    anonymous.cookies["tz"] = zone
    assert anonymous.get("/accounts/login/").status_code == 200
