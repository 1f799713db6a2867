"""Webhooks: every event is POSTed to the endpoints that want it, signed in the Standard Webhooks format.

A delivery row is written with its event, in the same transaction, so a committed event is never lost for an
endpoint; it is sent once that transaction commits. The retry schedule lives in the row (`next_attempt_at`): a
Celery countdown sends short waits, the periodic sweep (`webhooks_sweep`) sends longer ones and whatever a dead
worker or an unreachable broker lost. An attempt first claims its row with a conditional UPDATE, so the countdown,
the sweep and a manual "send again" never POST one delivery twice at once. Receivers de-duplicate on `webhook-id`
(the event id), as delivery is at least once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.utils import timezone
from standardwebhooks import Webhook

from ..exceptions import ApplicationError
from ..infra import webhook_http
from ..infra.inprocess import run_in_background
from ..infra.webhook_http import WebhookHostUnresolved, WebhookUrlRefused, webhook_url_check
from ..models import Event, Project, WebhookDelivery, WebhookEndpoint
from .actors import Actor

logger = logging.getLogger(__name__)

DELIVER_TASK = "contexts.deliver_webhook"
# Waits up to this long ride on a Celery countdown; longer ones wait for the sweep (a Redis broker hands a task
# whose countdown outlasts its visibility timeout to a second worker, and holds it in memory meanwhile).
COUNTDOWN_MAX = 300.0
# A delivery that has been due this long was lost (never sent, or its task died with a worker): the sweep sends it.
SWEEP_GRACE = 15.0
# One the sweep sent is sent again only this long after, if still not attempted (its task lost, or still waiting behind
# others in the queue): a queue that is slow to drain does not get a copy of each delivery at every sweep.
SWEEP_RESEND_AFTER = 120.0
# 408 Request Timeout, 425 Too Early and 429 Too Many Requests say "later"; any other 4xx says the request itself is
# refused, and sending the same bytes again for a day would not change that.
RETRYABLE_4XX = frozenset({408, 425, 429})
# Standard Webhooks: 410 Gone means the receiver is gone for good; stop sending to it.
GONE = 410
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
USER_AGENT = "sessionctx-webhooks/1"


# --- endpoints -------------------------------------------------------------------------------------


@transaction.atomic
def webhook_endpoint_create(*, url: str, event_types: list[str] | None = None, description: str = "",
                            project: Project | None = None) -> WebhookEndpoint:
    """Register an endpoint of `project` (default: the `default` project; its secret is generated); refused for a
    URL webhook_url_check refuses."""
    webhook_url_check(url)
    _check_types(event_types)
    return WebhookEndpoint.objects.create(project=project or Project.default(), url=url,
                                          event_types=list(event_types or []), description=description)


@transaction.atomic
def webhook_endpoint_update(*, endpoint: WebhookEndpoint, url: str, event_types: list[str],
                            description: str = "") -> WebhookEndpoint:
    """Change where and what an endpoint receives (the same checks as at registration); its secret stays."""
    if url != endpoint.url:
        webhook_url_check(url)
    _check_types(event_types)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=url, event_types=list(event_types),
                                                          description=description)
    return WebhookEndpoint.objects.get(pk=endpoint.pk)


def _check_types(event_types: list[str] | None) -> None:
    unknown = sorted(set(event_types or ()) - set(Event.Type.values))
    if unknown:
        raise ApplicationError(f"Unknown event types: {', '.join(unknown)}.", code="invalid",
                               details={"event_types": unknown})


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, actor: Actor) -> WebhookEndpoint:
    """Stop sending to an endpoint (a receiver being retired or repaired): events meanwhile are not queued for it,
    and its pending deliveries wait until it is enabled again."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=f"Disabled by {actor.label}.")
    return WebhookEndpoint.objects.get(pk=endpoint.pk)


@transaction.atomic
def webhook_endpoint_enable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Turn a disabled endpoint back on: its failure count starts again and its pending deliveries are due now."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=True, consecutive_failures=0, disabled_at=None,
                                                          disabled_reason="")
    due = list(WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, status=WebhookDelivery.Status.PENDING)
               .values_list("pk", flat=True))
    WebhookDelivery.objects.filter(pk__in=due).update(next_attempt_at=timezone.now())
    for delivery_id in due:
        send_on_commit(delivery_id)
    return WebhookEndpoint.objects.get(pk=endpoint.pk)


# --- deliveries ------------------------------------------------------------------------------------


def deliveries_create(*, event: Event) -> list[WebhookDelivery]:
    """The event's deliveries, one per active endpoint of its project that wants its type, in the caller's
    transaction; each is sent once that transaction commits."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(project_id=event.project_id, is_active=True)
                 if e.wants(event.type)]
    if not endpoints:
        return []
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(endpoint=endpoint, event=event, next_attempt_at=now) for endpoint in endpoints])
    ids = [d.pk for d in deliveries] if all(d.pk for d in deliveries) else list(
        WebhookDelivery.objects.filter(event=event).values_list("pk", flat=True))
    for delivery_id in ids:
        send_on_commit(delivery_id)
    return deliveries


@transaction.atomic
def webhook_delivery_resend(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, whatever its state (an admin's "send again"): one more attempt, no new schedule."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.PENDING,
                                                          next_attempt_at=timezone.now())
    send_on_commit(delivery.pk)
    return WebhookDelivery.objects.get(pk=delivery.pk)


def send_on_commit(delivery_id: int) -> None:
    transaction.on_commit(lambda: send(delivery_id))


def send(delivery_id: int, *, countdown: float = 0.0) -> None:
    """Hand one delivery to the workers; in the embedded default (no broker), to this process's in-process pool,
    never to the caller, so the request that caused the event never waits for a receiver."""
    if current_app.conf.task_always_eager:
        run_in_background(_run_here, delivery_id, countdown=countdown, may_run_here=False)
        _embedded_sweep()
        return
    try:
        current_app.tasks[DELIVER_TASK].apply_async(
            args=[delivery_id], countdown=countdown or None, queue=settings.SESSIONCTX_WEBHOOK_QUEUE,
            retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as exc:  # noqa: BLE001 - kombu raises several types for an unreachable broker
        # The row stays due: the sweep sends it once the broker is back.
        logger.warning("webhook delivery %s not sent, broker unavailable: %s", delivery_id, exc)


def _run_here(delivery_id: int) -> None:
    webhook_delivery_run(delivery_id=delivery_id)


_last_embedded_sweep = 0.0
_embedded_sweep_lock = threading.Lock()


def _embedded_sweep() -> None:
    """Without a broker there is no beat: retries a stopped process was holding go out with a later event (at
    most one sweep a minute per process)."""
    global _last_embedded_sweep
    with _embedded_sweep_lock:
        if time.monotonic() - _last_embedded_sweep < 60:
            return
        _last_embedded_sweep = time.monotonic()
    run_in_background(webhooks_sweep, may_run_here=False)


def _schedule_next(delivery: WebhookDelivery) -> None:
    """After an attempt left the delivery pending: send it again when due, if a countdown is the way to wait."""
    if delivery.status != WebhookDelivery.Status.PENDING or delivery.next_attempt_at is None:
        return
    wait = max(0.0, (delivery.next_attempt_at - timezone.now()).total_seconds())
    if wait <= COUNTDOWN_MAX or current_app.conf.task_always_eager:
        send(delivery.pk, countdown=wait)


def webhook_delivery_run(*, delivery_id: int) -> str:
    """What the task does: one attempt, then the next one queued when it is near; returns the delivery's status."""
    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    if delivery is None:
        return "skipped"
    _schedule_next(delivery)
    return delivery.status


def webhooks_sweep(*, now=None) -> int:
    """Send the deliveries that are due (and were not sent by a countdown) to the workers, unless the sweep sent them
    lately; returns how many."""
    now = now or timezone.now()
    # Sent again no sooner than SWEEP_RESEND_AFTER, and no sooner than it had been due when last sent: while no
    # webhook worker takes the queue, each wait is at least the whole wait before it (copies at about 0, 2, 5, 11,
    # 23, 47 minutes), not one every 2 minutes.
    waited_then = ExpressionWrapper(F("swept_at") - F("next_attempt_at"), output_field=DurationField())
    since = ExpressionWrapper(Value(now, output_field=DateTimeField()) - F("swept_at"), output_field=DurationField())
    due = list(WebhookDelivery.objects.annotate(waited_then=waited_then, since=since).filter(
        Q(swept_at__isnull=True)
        | Q(swept_at__lte=now - timedelta(seconds=SWEEP_RESEND_AFTER), waited_then__lte=F("since")),
        status=WebhookDelivery.Status.PENDING, endpoint__is_active=True,
        next_attempt_at__lte=now - timedelta(seconds=SWEEP_GRACE),
    ).order_by("next_attempt_at").values_list("pk", flat=True)[:1000])
    WebhookDelivery.objects.filter(pk__in=due).update(swept_at=now)
    for delivery_id in due:
        send(delivery_id)
    return len(due)


# --- one attempt -----------------------------------------------------------------------------------


def event_payload(event: Event) -> dict:
    """The body of a delivery: the event as GET /api/v1/events lists it."""
    created = event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"id": event.pk, "type": event.type, "session_id": event.session.session_id, "created_at": created,
            "data": event.data}


def _claim(delivery_id: int) -> datetime | None:
    """Take the delivery for one attempt if it is due, and return the attempt's lease: until the attempt ends, it is
    due again only after the attempt's worst case (so a worker that dies mid-attempt leaves it to the sweep)."""
    now = timezone.now()
    lease = now + timedelta(seconds=2 * settings.SESSIONCTX_WEBHOOK_TIMEOUT + 30)
    # attempt_until keeps a second attempt out while one is under way, even once a "send again" made the delivery
    # due again (that one goes out when this one is recorded, see _record). The endpoint is asked in a subquery,
    # not a join: Django turns an UPDATE with a join into `id IN (SELECT ...)`, and PostgreSQL re-checks only that
    # on a row another claim changed meanwhile, so two workers would both take it.
    taken = WebhookDelivery.objects.filter(
        Q(attempt_until__isnull=True) | Q(attempt_until__lte=now),
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
        endpoint_id__in=WebhookEndpoint.objects.filter(is_active=True).values("pk"),
    ).update(next_attempt_at=lease, attempt_until=lease, attempts=F("attempts") + 1)
    return lease if taken else None


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """POST a due delivery once and record the answer; None when it was not due (delivered, failed, disabled, or
    being attempted elsewhere)."""
    lease = _claim(delivery_id)
    if lease is None:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint", "event__session").get(pk=delivery_id)
    endpoint, event = delivery.endpoint, delivery.event
    body = json.dumps(event_payload(event), separators=(",", ":"), ensure_ascii=False)
    sent_at = timezone.now()
    headers = {
        "webhook-id": str(event.pk),
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(endpoint.secret).sign(str(event.pk), sent_at.astimezone(UTC), body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    code, error, retry, wait_at_least = None, "", True, 0.0
    try:
        # Checked again now: what a name resolves to can change after the endpoint was registered.
        target = webhook_url_check(endpoint.url)
        code, wait_at_least = webhook_http.post(target, body.encode(), headers)
        if 200 <= code < 300:
            retry, error = False, ""
        elif code == GONE or (400 <= code < 500 and code not in RETRYABLE_4XX):
            retry, error = False, f"HTTP {code}"
        elif 300 <= code < 400:
            retry, error = False, f"HTTP {code}: redirects are not followed"
        else:
            error = f"HTTP {code}"
    except WebhookHostUnresolved as exc:
        # A resolver's hiccup is like a refused connection: tried again on schedule, not failed at once.
        error = exc.message
    except WebhookUrlRefused as exc:
        retry, error = False, exc.message
    except webhook_http.TRANSPORT_ERRORS as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        # Anything else is a defect of ours, but the delivery still follows its schedule to `failed`: escaping
        # here would leave it pending, sent again by every sweep and never given up.
        logger.exception("webhook delivery %s: unexpected error", delivery_id)
        error = f"{type(exc).__name__}: {exc}"
    return _record(delivery, lease=lease, code=code, error=error[:2000], retry=retry, gone=code == GONE,
                   wait_at_least=wait_at_least)


@transaction.atomic
def _record(delivery: WebhookDelivery, *, lease: datetime, code: int | None, error: str, retry: bool, gone: bool,
            wait_at_least: float = 0.0) -> WebhookDelivery | None:
    now = timezone.now()
    schedule = settings.SESSIONCTX_WEBHOOK_RETRY_SCHEDULE
    endpoint_id = delivery.endpoint_id
    # A "send again" (or enabling the endpoint) during the attempt made it due without touching its lease.
    row = (WebhookDelivery.objects.select_for_update().filter(pk=delivery.pk)
           .values_list("status", "next_attempt_at", "attempt_until").first())
    if row is not None and row[2] != lease:
        # This attempt outlived its lease (a paused worker, a resolver that hung) and another attempt took the
        # delivery meanwhile, or has already recorded its outcome: that newer outcome stands.
        logger.warning("webhook delivery %s: an attempt that outlived its lease ended; its outcome is dropped",
                       delivery.pk)
        return WebhookDelivery.objects.filter(pk=delivery.pk).first()
    asked_again = row is not None and row[0] == WebhookDelivery.Status.PENDING and row[1] != row[2]
    fields = {"response_code": code, "last_error": error, "attempt_until": None}
    if not error:
        fields.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None)
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(consecutive_failures=0)
    elif retry and delivery.attempts <= len(schedule):
        wait = max(schedule[delivery.attempts - 1], wait_at_least)
        fields.update(next_attempt_at=now + timedelta(seconds=wait))
    else:
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(consecutive_failures=F("consecutive_failures") + 1)
        failures = WebhookEndpoint.objects.values_list("consecutive_failures", flat=True).filter(
            pk=endpoint_id).first() or 0
        reason = ""
        if gone:
            reason = "The receiver answered 410 Gone."
        elif failures >= settings.SESSIONCTX_WEBHOOK_DISABLE_AFTER:
            reason = f"{failures} deliveries in a row failed; the last: {error[:500]}"
        if reason:
            WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True).update(
                is_active=False, disabled_at=now, disabled_reason=reason)
            logger.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)
    if asked_again:
        fields.update(status=WebhookDelivery.Status.PENDING, next_attempt_at=now)  # sent by _schedule_next
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    # None when the endpoint was deleted (its deliveries with it) during the attempt.
    return WebhookDelivery.objects.filter(pk=delivery.pk).first()
