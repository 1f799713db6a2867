"""Model-driven updates of a snapshot."""

from __future__ import annotations

import uuid

from django.db import models

from .sessions import SessionContext


class ExtractionRun(models.Model):
    """One model-driven update of a snapshot: what it consumed, what it cost, how it ended."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        # The model's answer changed nothing although its messages carry information: they stay unseen (error: why).
        NO_CHANGE = "no_change", "No change"
        # Its worker died before it finished, and another run of the session took its messages (superseded_by).
        SUPERSEDED = "superseded", "Superseded"
        # Today's tokens had reached SESSIONCTX_DAILY_TOKEN_BUDGET: the model was not called, the messages stay unseen.
        BUDGET_EXCEEDED = "budget_exceeded", "Budget exceeded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=32, default="auto")
    extractor = models.CharField(max_length=32, blank=True, default="")
    model = models.CharField(max_length=255, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    prompt_chars = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    chunks = models.PositiveIntegerField(default=0)
    # Calls made to the model, failed ones included (attempts counts deliveries of the task).
    model_calls = models.PositiveIntegerField(default=0)
    # USD, from the tokens and SESSIONCTX_MODEL_PRICES when the run finished; null when the model had no price.
    cost_usd = models.DecimalField(max_digits=16, decimal_places=8, null=True, blank=True)
    error = models.TextField(blank=True, default="")
    first_seq = models.PositiveIntegerField(null=True, blank=True)
    last_seq = models.PositiveIntegerField(null=True, blank=True)
    from_version = models.PositiveIntegerField(null=True, blank=True)
    to_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Last time the run was handed to the broker; null while the broker could not take it.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # Last time a worker received the run's task, before its claim: a run still queued a while after that lost
    # the worker that had it (the broker redelivers such a task only after its visibility timeout).
    received_at = models.DateTimeField(null=True, blank=True)
    # The run that took over this one's messages after its worker died (status superseded).
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The X-Request-ID of the request that asked for the run, to find its log lines on the web and worker side.
    request_id = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session", "-created_at"], name="run_session_idx"),
            models.Index(fields=["status", "created_at"], name="run_status_idx"),
            # Today's tokens (the daily budget, read as every run starts) and cost per day.
            models.Index(fields=["finished_at"], name="run_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.id} {self.status}"
