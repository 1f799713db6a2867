"""Webhooks through real Celery workers (Redis broker, PostgreSQL): sent by the worker, retried by countdown, and
not lost when the worker holding a retry is SIGKILLed."""

from __future__ import annotations

import time

import pytest
import redis
from django.utils import timezone
from standardwebhooks import Webhook

from contexts import services
from contexts.models import WebhookDelivery
from contexts.services import Actor
from contexts.services.webhooks import SWEEP_RESEND_AFTER, webhook_endpoint_create, webhooks_sweep
from tests.extraction.test_worker import REDIS_URL, api, cluster, settled, wait_until  # noqa: F401 - the fixtures
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


def test_deliveries_have_a_queue_of_their_own_and_a_waiting_one_is_not_copied_at_every_sweep(
        cluster, api, settings):  # noqa: F811
    _fake, start = cluster
    broker = redis.Redis.from_url(REDIS_URL)
    webhook_queue = settings.SESSIONCTX_WEBHOOK_QUEUE
    # The Procfile's update worker: a receiver that hangs can hold only the workers of the webhook queue.
    start("updates", only=settings.CELERY_TASK_DEFAULT_QUEUE, **WORKER_ENV)
    with Receiver(200) as receiver:
        endpoint = _setup(settings, receiver)
        services.handoff_request(session=make_session("hook-queue"), reason="refund", actor=Actor.system("agent"))
        api("hook-queue", ("user", "Where is my refund?"), ("assistant", "It left on Monday."))
        wait_until(lambda: settled("hook-queue", 2), what="the update, by the update worker")
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert (delivery.status, delivery.attempts, receiver.received) == ("pending", 0, [])
        assert broker.llen(webhook_queue) == 1

        # Due and not attempted while it waits in its queue: the sweep sends one copy, then none until
        # SWEEP_RESEND_AFTER has passed (it used to add one every 30 s for as long as the queue was behind).
        later = timezone.now() + timezone.timedelta(seconds=20)
        assert webhooks_sweep(now=later) == 1
        assert webhooks_sweep(now=later + timezone.timedelta(seconds=30)) == 0
        assert webhooks_sweep(now=later + timezone.timedelta(seconds=SWEEP_RESEND_AFTER - 1)) == 0
        assert broker.llen(webhook_queue) == 2
        assert webhooks_sweep(now=later + timezone.timedelta(seconds=SWEEP_RESEND_AFTER + 1)) == 1

        start("webhooks", only=webhook_queue, pool="threads", **WORKER_ENV)  # as the Procfile runs it
        delivery = _wait_delivered(delivery.pk, timeout=30)
        receiver.wait_for(1, timeout=5)
        time.sleep(1)  # the two copies are taken too, and find it delivered
        assert broker.llen(webhook_queue) == 0
    assert (delivery.status, delivery.attempts, len(receiver.received)) == ("delivered", 1, 1)
