"""The audit of what retention and erasure deleted."""

from __future__ import annotations

from django.db import models

from .projects import Project


class DataDeletion(models.Model):
    """What a retention purge or an end user's erasure deleted: criteria and row counts, never content."""

    class Kind(models.TextChoices):
        RETENTION = "retention", "Retention"
        ERASURE = "erasure", "Erasure by end user"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The project whose sessions were deleted; null for a purge across every project.
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Retention: the cutoff; erasure: a SHA-256 of the user id, so the record proves an erasure without keeping
    # the identifier it erased.
    criteria = models.JSONField(default=dict)
    # Rows deleted per kind (sessions, messages, ...), updated in each batch's transaction.
    counts = models.JSONField(default=dict)
    actor = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "data deletion"

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"
