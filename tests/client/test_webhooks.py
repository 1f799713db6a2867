"""The client's verify_webhook accepts what the service really sends (signed by the standardwebhooks library) and
refuses a wrong secret, a changed body, a missing header and an old delivery."""

from __future__ import annotations

import json

import pytest
from sessionctx_client import WebhookVerificationError, verify_webhook

from contexts import services
from contexts.models import Event, WebhookDelivery
from contexts.services import Actor
from contexts.services.webhooks import webhook_delivery_attempt, webhook_endpoint_create
from tests.factories import make_session
from tests.services.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(204) as receiver:
        endpoint = webhook_endpoint_create(url=receiver.url)
        with django_capture_on_commit_callbacks(execute=False):
            session = services.handoff_request(session=make_session("hook-client"), reason="refund please",
                                               actor=Actor.system("key:agent"))
        event = Event.objects.filter(session_id=session.pk).latest("id")
        webhook_delivery_attempt(delivery_id=WebhookDelivery.objects.get(endpoint=endpoint, event=event).pk)
        (request,) = receiver.received
    return endpoint, event, request


def test_a_real_delivery_verifies_and_gives_the_event(delivered):
    endpoint, event, request = delivered
    payload = verify_webhook(request.headers, request.body, endpoint.secret)
    assert payload["id"] == event.pk and payload["type"] == "handoff.requested"
    assert payload["session_id"] == "hook-client" and payload["data"]["reason"] == "refund please"
    assert verify_webhook(request.headers, request.body.decode(), endpoint.secret) == payload  # str body too


def test_forged_changed_or_stale_deliveries_are_refused(delivered):
    endpoint, _event, request = delivered
    other = webhook_endpoint_create(url="http://127.0.0.1:9/other")
    cases = [
        (request.headers, request.body, other.secret),
        (request.headers, request.body.replace(b"refund", b"refunD"), endpoint.secret),
        ({k: v for k, v in request.headers.items() if k.lower() != "webhook-signature"}, request.body,
         endpoint.secret),
        ({**request.headers, "webhook-id": "999999"}, request.body, endpoint.secret),
    ]
    for headers, body, secret in cases:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(headers, body, secret)
    stamp = int(request.headers["webhook-timestamp"])
    with pytest.raises(WebhookVerificationError, match="too far"):
        verify_webhook(request.headers, request.body, endpoint.secret, now=stamp + 301)
    assert json.loads(request.body)["id"] == verify_webhook(request.headers, request.body, endpoint.secret,
                                                            now=stamp + 299)["id"]


def test_a_forged_signature_with_a_character_beyond_ascii_is_refused_not_a_crash(delivered):
    # Header values reach a WSGI app as latin-1 text: anyone who can reach the receiver can send "é".
    endpoint, _event, request = delivered
    for signature in ("v1,\u00e9", "v1,abc\u00e9 v1,x", "v1,\udcff"):
        with pytest.raises(WebhookVerificationError):
            verify_webhook({**request.headers, "webhook-signature": signature}, request.body, endpoint.secret)
    # The real signature after a forged one still verifies.
    genuine = request.headers["webhook-signature"]
    assert verify_webhook({**request.headers, "webhook-signature": f"v1,\u00e9 {genuine}"}, request.body,
                          endpoint.secret)["id"] == _event.pk
