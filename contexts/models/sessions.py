"""A conversation's snapshot, its audit revisions, its messages and its handoff events."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from .projects import Project

SESSION_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,255}$"
session_id_validator = RegexValidator(
    SESSION_ID_PATTERN, "Session ids are 1-255 characters of A-Z a-z 0-9 . _ : @ -"
)

SNAPSHOT_FIELDS = ("summary", "goal", "plan", "progress", "handoff_note")


class Mode(models.TextChoices):
    SUMMARY = "summary", "Summary"
    PLANNING = "planning", "Planning"


class Status(models.TextChoices):
    ACTIVE = "active", "Active"
    HANDOFF_REQUESTED = "handoff_requested", "Handoff requested"
    HUMAN = "human", "Human"
    CLOSED = "closed", "Closed"


# The update policies (contexts.extraction.policy reads them; sessionctx/settings/sessionctx.py checks
# SESSIONCTX_UPDATE_POLICY the same way).
UPDATE_POLICY_PATTERN = r"every_turn|every_n_turns:[1-9]\d{0,5}|idle:[1-9]\d{0,6}|tokens:[1-9]\d{0,7}"



class SessionContext(models.Model):
    """The current snapshot of one conversation; replaced on every change, versioned."""

    # No index of its own: the unique constraint and every list index lead with it.
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="sessions", db_index=False)
    # Unique per project: two projects may both have `chat-42`.
    session_id = models.CharField(max_length=255, validators=[session_id_validator])
    user_id = models.CharField(max_length=255, blank=True, default="")
    agent_id = models.CharField(max_length=255, blank=True, default="")
    team_id = models.CharField(max_length=255, blank=True, default="")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SUMMARY)

    summary = models.TextField(blank=True, default="")
    goal = models.TextField(blank=True, default="")
    plan = models.JSONField(default=list, blank=True)
    progress = models.JSONField(default=list, blank=True)
    # Written by staff when they hand a conversation back, so the agent knows what happened.
    handoff_note = models.TextField(blank=True, default="")

    status = models.CharField(max_length=24, choices=Status.choices, default=Status.ACTIVE)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    handoff_reason = models.TextField(blank=True, default="")
    handoff_requested_at = models.DateTimeField(null=True, blank=True)

    version = models.PositiveIntegerField(default=0)
    # Sequence number of the last message posted, and of the last one an extraction consumed.
    last_message_seq = models.PositiveIntegerField(default=0)
    cursor_seq = models.PositiveIntegerField(default=0)
    # When posted turns queue a model-driven update (contexts.extraction.policy); empty: SESSIONCTX_UPDATE_POLICY.
    # db_default too: bulk loads that write the table with SQL (imports, the scale tests) need not name it.
    update_policy = models.CharField(
        max_length=32, blank=True, default="", db_default="",
        validators=[RegexValidator(rf"^(?:{UPDATE_POLICY_PATTERN})$",
                                   "every_turn, every_n_turns:N, idle:S or tokens:T")],
        help_text="every_turn, every_n_turns:N, idle:S or tokens:T; empty for the installation's default.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "session_id"], name="session_unique_per_project"),
        ]
        # Every list is scoped to one project, so the project leads each index.
        indexes = [
            models.Index(fields=["project", "-updated_at", "-id"], name="ctx_updated_idx"),
            models.Index(fields=["project", "user_id", "-updated_at"], name="ctx_user_updated_idx"),
            models.Index(fields=["project", "agent_id", "-updated_at"], name="ctx_agent_updated_idx"),
            models.Index(fields=["project", "status", "-updated_at"], name="ctx_status_updated_idx"),
            models.Index(
                fields=["project", "handoff_requested_at"],
                name="ctx_handoff_queue_idx",
                condition=Q(status="handoff_requested"),
            ),
        ]
        permissions = [
            ("edit_context", "Can edit and reset session contexts"),
            ("handle_handoff", "Can take, annotate and release handoffs"),
        ]

    def __str__(self) -> str:
        return self.session_id

    @property
    def is_empty(self) -> bool:
        return not (self.summary or self.goal or self.plan or self.progress or self.handoff_note)

    @property
    def has_unseen_messages(self) -> bool:
        return self.last_message_seq > self.cursor_seq

    def snapshot(self) -> dict:
        """The snapshot as stored in a revision: content fields plus mode and status."""
        return {
            "mode": self.mode,
            "status": self.status,
            "summary": self.summary,
            "goal": self.goal,
            "plan": list(self.plan),
            "progress": list(self.progress),
            "handoff_note": self.handoff_note,
        }


class Revision(models.Model):
    """One row per change of a snapshot, written in the same transaction as the change."""

    class Source(models.TextChoices):
        EXTRACTION = "extraction", "Extraction"
        API = "api", "API"
        STAFF = "staff", "Staff"
        ADMIN = "admin", "Admin"
        RESET = "reset", "Reset"
        HANDOFF = "handoff", "Handoff"

    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    source = models.CharField(max_length=16, choices=Source.choices)
    actor = models.CharField(max_length=255)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True, default="")
    snapshot = models.JSONField()
    changed_fields = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["session", "version"], name="revision_unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} v{self.version} ({self.source})"

    def save(self, *args, **kwargs):
        # The audit trail is append-only: an existing revision is never rewritten.
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("Revisions are append-only")
        super().save(*args, **kwargs)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"
        TOOL = "tool", "Tool"

    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # A staff member's reply to the customer (role assistant), written on the handoff desk.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="message_unique_seq"),
            models.UniqueConstraint(
                fields=["session", "idempotency_key"],
                name="message_unique_idempotency_key",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.role}"


class HandoffEvent(models.Model):
    class Kind(models.TextChoices):
        REQUESTED = "requested", "Requested"
        CLAIMED = "claimed", "Taken"
        NOTE = "note", "Note"
        RELEASED = "released", "Handed back"
        CLOSED = "closed", "Closed"

    session = models.ForeignKey(SessionContext, on_delete=models.CASCADE, related_name="handoff_events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.CharField(max_length=255)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at"], name="handoff_session_idx")]

    def __str__(self) -> str:
        return f"{self.session_id} {self.kind} by {self.actor}"
