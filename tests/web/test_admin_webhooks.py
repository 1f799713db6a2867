"""The admin's webhook pages: register an endpoint (refused on a private address), see its secret, its delivery log,
a notice when it was disabled, enable it again, send a delivery again."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from contexts import services
from contexts.models import Project, WebhookDelivery, WebhookEndpoint
from contexts.services import Actor
from contexts.services.webhooks import webhook_delivery_attempt, webhook_endpoint_create
from tests.factories import make_session, make_user
from tests.services.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db

ADD = "/admin/contexts/webhookendpoint/add/"


def test_an_endpoint_on_a_loopback_address_is_refused_with_the_reason_and_nothing_is_saved(superuser, settings):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = False
    response = superuser.post(ADD, {"project": Project.default().pk, "url": "http://127.0.0.1:8080/hook",
                                    "description": "", "event_types": []})
    assert response.status_code == 200
    assert "resolves to 127.0.0.1, a private, loopback" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_registering_an_endpoint_opens_its_page_with_the_signing_secret_and_the_chosen_types(superuser, settings):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    response = superuser.post(ADD, {"project": Project.default().pk, "url": "http://127.0.0.1:8080/hook",
                                    "description": "relay",
                                    "event_types": ["message.staff_reply", "handoff.released"]}, follow=True)
    endpoint = WebhookEndpoint.objects.get()
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/admin/contexts/webhookendpoint/{endpoint.pk}/change/"
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in page
    assert "Copy its signing secret below" in page
    assert sorted(endpoint.event_types) == ["handoff.released", "message.staff_reply"]
    assert endpoint.is_active


def test_a_disabled_endpoint_shows_a_notice_with_the_reason_and_the_enable_action_turns_it_back_on(
        superuser, settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    endpoint = webhook_endpoint_create(url="http://127.0.0.1:9/hook")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_at=timezone.now(), consecutive_failures=10,
        disabled_reason="10 deliveries in a row failed; the last: HTTP 500")
    page = superuser.get("/admin/contexts/webhookendpoint/").content.decode()
    assert "was disabled on" in page and "10 deliveries in a row failed; the last: HTTP 500" in page

    with django_capture_on_commit_callbacks(execute=False):
        response = superuser.post("/admin/contexts/webhookendpoint/",
                                  {"action": "enable", "_selected_action": [endpoint.pk]}, follow=True)
    endpoint.refresh_from_db()
    assert "Enabled 1 endpoint(s)" in response.content.decode()
    assert (endpoint.is_active, endpoint.consecutive_failures, endpoint.disabled_at) == (True, 0, None)


def _endpoint_with_a_delivery(session_id: str, settings, captured) -> WebhookEndpoint:
    """An endpoint for handoff requests, and one request's delivery to it (not sent)."""
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    endpoint = webhook_endpoint_create(url="http://127.0.0.1:9/hook", event_types=["handoff.requested"])
    with captured(execute=False):
        services.handoff_request(session=make_session(session_id), reason="refund", actor=Actor.system("agent"))
    return endpoint


def test_the_delivery_log_lists_an_endpoints_deliveries_and_send_again_queues_one(
        superuser, settings, django_capture_on_commit_callbacks):
    endpoint = _endpoint_with_a_delivery("admin-hook", settings, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", response_code=503, attempts=8,
                                                          last_error="HTTP 503", next_attempt_at=None)

    change_page = superuser.get(f"/admin/contexts/webhookendpoint/{endpoint.pk}/change/").content.decode()
    log_url = f"/admin/contexts/webhookdelivery/?endpoint__id__exact={endpoint.pk}"
    assert log_url.replace("&", "&amp;") in change_page or log_url in change_page
    log = superuser.get(log_url).content.decode()
    assert "handoff.requested" in log and "503" in log and "Failed" in log

    with django_capture_on_commit_callbacks(execute=False) as sends:
        response = superuser.post("/admin/contexts/webhookdelivery/",
                                  {"action": "send_again", "_selected_action": [delivery.pk]}, follow=True)
    delivery.refresh_from_db()
    assert "1 delivery queued to be sent again" in response.content.decode()
    assert delivery.status == "pending" and len(sends) == 1


def test_support_staff_cannot_see_or_register_webhook_endpoints(support, settings):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    assert support.get("/admin/contexts/webhookendpoint/").status_code in (302, 403)
    support.post(ADD, {"url": "http://127.0.0.1:8080/hook", "event_types": []})
    assert not WebhookEndpoint.objects.exists()


def test_send_again_to_a_disabled_endpoint_says_it_waits_until_the_endpoint_is_enabled(
        superuser, settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(200) as receiver:
        endpoint = webhook_endpoint_create(url=receiver.url, event_types=["handoff.requested"])
        with django_capture_on_commit_callbacks(execute=False):
            services.handoff_request(session=make_session("admin-hook-off"), reason="refund",
                                     actor=Actor.system("agent"))
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", response_code=500, attempts=8,
                                                              last_error="HTTP 500", next_attempt_at=None)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            is_active=False, disabled_at=timezone.now(), disabled_reason="10 deliveries in a row failed")

        with django_capture_on_commit_callbacks(execute=False):
            response = superuser.post("/admin/contexts/webhookdelivery/",
                                      {"action": "send_again", "_selected_action": [delivery.pk]}, follow=True)
        assert webhook_delivery_attempt(delivery_id=delivery.pk) is None  # nothing goes to a disabled endpoint
        page = response.content.decode()
        assert receiver.received == []
    # Not "queued to be sent again" alone, as a success: nothing goes out until the endpoint is enabled.
    assert "its endpoint is disabled" in page and "Enable the selected endpoints again" in page
    delivery.refresh_from_db()
    assert delivery.status == "pending"  # enabling the endpoint sends it


def test_an_endpoint_is_disabled_by_hand_and_deleted_with_its_delivery_log(
        superuser, settings, django_capture_on_commit_callbacks):
    endpoint = _endpoint_with_a_delivery("retire-hook", settings, django_capture_on_commit_callbacks)
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1

    # A receiver being retired: nothing more is sent to it, and the page says who stopped it.
    response = superuser.post("/admin/contexts/webhookendpoint/",
                              {"action": "disable", "_selected_action": [endpoint.pk]}, follow=True)
    assert "Disabled 1 endpoint(s)" in response.content.decode()
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_reason == "Disabled by user:ada-admin."
    with django_capture_on_commit_callbacks(execute=False):
        services.handoff_request(session=make_session("retire-hook-2"), reason="refund", actor=Actor.system("a"))
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1

    # Deleted with its delivery log (read-only rows that used to make the endpoint undeletable).
    url = f"/admin/contexts/webhookendpoint/{endpoint.pk}/delete/"
    confirm = superuser.get(url)
    assert confirm.status_code == 200 and "permission to delete" not in confirm.content.decode()
    assert superuser.post(url, {"post": "yes"}).status_code == 302
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookDelivery.objects.exists()


def test_bulk_delete_leaves_out_the_endpoints_of_a_project_where_the_person_is_not_an_editor(client, settings):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    other = Project.objects.create(slug="kitchen", name="Kitchen")
    mine = webhook_endpoint_create(url="http://127.0.0.1:9/mine")
    theirs = webhook_endpoint_create(url="http://127.0.0.1:9/theirs", project=other)
    person = make_user("ops", role="editor")
    person.is_staff = True
    person.save(update_fields=["is_staff"])
    person.user_permissions.add(*Permission.objects.filter(content_type__model="webhookendpoint"))
    services.membership_set(project=other, user=person, role="support")
    client.force_login(person)
    confirm = client.post("/admin/contexts/webhookendpoint/", {"action": "delete_selected",
                                                               "_selected_action": [mine.pk, theirs.pk]})
    assert "1 selected endpoint(s) left out" in confirm.content.decode()
    client.post("/admin/contexts/webhookendpoint/", {"action": "delete_selected", "post": "yes",
                                                     "_selected_action": [mine.pk, theirs.pk]})
    assert list(WebhookEndpoint.objects.values_list("url", flat=True)) == ["http://127.0.0.1:9/theirs"]
