"""The event feed and the webhooks that carry it out."""

from __future__ import annotations

import base64
import secrets

from django.db import models

from .projects import Project
from .sessions import SessionContext


class Event(models.Model):
    """What agents and webhooks learn of: a row per handoff change, staff reply and context change. Ids grow
    in commit order (services.events), so `after=<id>` never skips one that commits late."""

    class Type(models.TextChoices):
        CONTEXT_UPDATED = "context.updated", "Context updated"
        HANDOFF_REQUESTED = "handoff.requested", "Handoff requested"
        HANDOFF_TAKEN = "handoff.taken", "Taken by a person"
        HANDOFF_TAKEN_OVER = "handoff.taken_over", "Taken over from another person"
        HANDOFF_RELEASED = "handoff.released", "Handed back"
        HANDOFF_CLOSED = "handoff.closed", "Closed"
        STAFF_REPLY = "message.staff_reply", "Staff reply"

    id = models.BigAutoField(primary_key=True)
    # The session's project, copied so the feed of one project is one index range.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=32, choices=Type.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["session", "id"], name="event_session_idx"),
                   models.Index(fields=["project", "id"], name="event_project_idx")]

    def __str__(self) -> str:
        return f"{self.id} {self.type} {self.session_id}"


def webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64 (the format its libraries read)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookEndpoint(models.Model):
    """A receiver an admin registered: every event of its types in its project is POSTed to it, signed with its
    secret."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000, help_text="http(s) URL the events are POSTed to.")
    description = models.CharField(max_length=200, blank=True, default="")
    # Kept in clear: HMAC signing needs the key itself (as in every Standard Webhooks sender).
    secret = models.CharField(max_length=100, default=webhook_secret, editable=False)
    event_types = models.JSONField(default=list, blank=True, help_text="Empty: every event type.")
    is_active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Deliveries that failed in a row (after all their retries); a delivery resets it.")
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One event for one endpoint: created with the event, in its transaction; retried until delivered or failed."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="webhook_deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # When the next attempt is due; while an attempt runs, when it is presumed lost (its worker died).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While an attempt runs, when it is presumed lost: no other attempt starts before then, even if a "send again"
    # made the delivery due meanwhile.
    attempt_until = models.DateTimeField(null=True, blank=True)
    # When the sweep last sent it to the workers: it sends it again only after a while, not at every sweep while it
    # waits in the queue behind others.
    swept_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")]

    def __str__(self) -> str:
        return f"event {self.event_id} to {self.endpoint_id}: {self.status}"
