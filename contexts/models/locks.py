"""Staff-locked snapshot fields, their history, and what extractions proposed for them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .runs import ExtractionRun
from .sessions import SessionContext


class FieldLock(models.Model):
    """A snapshot field an editor has locked: model-driven updates leave it alone (they propose instead) and
    agents' API writes to it are refused. One row per locked field; LockChange keeps the history."""

    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="locks")
    field = models.CharField(max_length=16)
    reason = models.TextField()
    actor = models.CharField(max_length=255)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "field"]
        constraints = [models.UniqueConstraint(fields=["session", "field"], name="field_lock_once")]

    def __str__(self) -> str:
        return f"{self.session_id} {self.field} locked by {self.actor}"


class LockChange(models.Model):
    """The audit row of a lock change, written in the same transaction: which fields were locked after it."""

    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="lock_changes")
    fields = models.JSONField(default=list)
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=255)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.session_id} locks {self.fields} by {self.actor}"


class Proposal(models.Model):
    """What an extraction would have written to a locked field: the latest one per field, for an editor to
    accept or dismiss."""

    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="proposals")
    field = models.CharField(max_length=16)
    value = models.JSONField()
    from_run = models.ForeignKey(ExtractionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["session", "field"]
        constraints = [models.UniqueConstraint(fields=["session", "field"], name="proposal_latest_per_field")]

    def __str__(self) -> str:
        return f"{self.session_id} {self.field} proposal"
