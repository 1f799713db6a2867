"""Webhooks through real Celery workers (Redis broker, PostgreSQL): sent by the worker, retried by countdown, and
not lost when the worker holding a retry is SIGKILLed."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook

from contexts import services
from contexts.models import WebhookDelivery
from contexts.services import Actor
from contexts.services.webhooks import webhook_endpoint_create
from tests.extraction.test_worker import cluster  # noqa: F401 - the fixture
from tests.factories import make_session
from tests.services.webhook_receiver import Receiver

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {"SESSIONCTX_WEBHOOK_ALLOW_PRIVATE": "true", "SESSIONCTX_WEBHOOK_RETRY_SCHEDULE": "2,2",
              "SESSIONCTX_WEBHOOK_TIMEOUT": "2"}


def _wait_delivered(delivery_id: int, timeout: float) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        if delivery.status != "pending":
            return delivery
        time.sleep(0.1)
    raise AssertionError(f"delivery still pending after {timeout} s: {WebhookDelivery.objects.get(pk=delivery_id)}")


def _setup(settings, receiver):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    endpoint = webhook_endpoint_create(url=receiver.url, event_types=["handoff.requested"])
    # This process may no longer send to 127.0.0.1: a delivery that arrives was sent by the worker.
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = False
    return endpoint


def test_a_worker_sends_the_event_and_retries_a_500_under_the_same_webhook_id(cluster, settings):  # noqa: F811
    _fake, start = cluster
    start("hooks", **WORKER_ENV)
    with Receiver(500, 200) as receiver:
        endpoint = _setup(settings, receiver)
        services.handoff_request(session=make_session("worker-hook"), reason="refund", actor=Actor.system("agent"))
        delivery = _wait_delivered(WebhookDelivery.objects.get(endpoint=endpoint).pk, timeout=20)
        requests = receiver.received
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 2, 200)
    assert len(requests) == 2 and requests[1].at - requests[0].at >= 2
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    assert Webhook(endpoint.secret).verify(requests[1].body, requests[1].headers)["session_id"] == "worker-hook"


def test_a_retry_held_by_a_killed_worker_is_sent_by_the_next_one(cluster, settings):  # noqa: F811
    _fake, start = cluster
    first = start("hooks-1", **WORKER_ENV)
    with Receiver(500, 200) as receiver:
        endpoint = _setup(settings, receiver)
        services.handoff_request(session=make_session("worker-hook-2"), reason="refund", actor=Actor.system("agent"))
        receiver.wait_for(1, timeout=20)
        time.sleep(0.5)  # the worker has recorded the 500 and holds the retry (countdown 2 s)
        first.kill()
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert (delivery.status, delivery.attempts) == ("pending", 1)
        start("hooks-2", **WORKER_ENV)
        delivery = _wait_delivered(delivery.pk, timeout=45)
        assert len(receiver.received) == 2
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
