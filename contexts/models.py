"""Data model: projects, session snapshots, their audit revisions, messages, handoff events, runs, API keys.

Every write goes through contexts.services; nothing here changes a snapshot on its own.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

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


# The update policies (contexts.extraction.policy reads them; settings.py checks SESSIONCTX_UPDATE_POLICY the same way).
UPDATE_POLICY_PATTERN = r"every_turn|every_n_turns:[1-9]\d{0,5}|idle:[1-9]\d{0,6}|tokens:[1-9]\d{0,7}"


PROJECT_SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,49}$"
project_slug_validator = RegexValidator(PROJECT_SLUG_PATTERN, "Project slugs are 1-50 characters of a-z 0-9 -, "
                                                              "starting with a letter or digit")


class Project(models.Model):
    """A tenant: it owns API keys, sessions (with everything under them), webhooks, and staff memberships. An API
    key sees only its project; staff see the projects they are members of (superusers: all)."""

    DEFAULT_SLUG = "default"

    slug = models.CharField(max_length=50, unique=True, validators=[project_slug_validator])
    name = models.CharField(max_length=100)
    # Conversations untouched this many days are deleted by the retention task; null: SESSIONCTX_RETENTION_DAYS.
    retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Delete conversations untouched this many days. Empty: the installation's "
                  "SESSIONCTX_RETENTION_DAYS (off unless set).")
    # Model tokens per UTC day for the project's model-driven updates; null: SESSIONCTX_DAILY_TOKEN_BUDGET.
    daily_token_budget = models.PositiveBigIntegerField(
        null=True, blank=True,
        help_text="Model tokens per UTC day for this project. Empty: the installation's SESSIONCTX_DAILY_TOKEN_BUDGET.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @classmethod
    def default(cls) -> Project:
        """The project of keys and commands that name none (created by migration 0014, or here after a flush)."""
        project, _ = cls.objects.get_or_create(slug=cls.DEFAULT_SLUG, defaults={"name": "Default"})
        return project


class ProjectRole(models.TextChoices):
    SUPPORT = "support", "Support (read, handle handoffs)"
    EDITOR = "editor", "Editor (also edit and reset contexts)"


class ProjectMembership(models.Model):
    """A staff user's place in a project, with the role they have there."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="project_memberships")
    role = models.CharField(max_length=16, choices=ProjectRole.choices, default=ProjectRole.SUPPORT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__slug", "user__username"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_once")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class SessionContext(models.Model):
    """The current snapshot of one conversation; replaced on every change, versioned."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="sessions")
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
            # Retention and the idle sweep look across projects by age.
            models.Index(fields=["updated_at"], name="ctx_updated_any_idx"),
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
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")]

    def __str__(self) -> str:
        return f"event {self.event_id} to {self.endpoint_id}: {self.status}"


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


class ApiKey(models.Model):
    """An agent's credential. Only a SHA-256 hash of the key is stored; the key is shown once."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # After this the key is refused with 401 ("expired"); null: it does not expire.
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the key does not expire.")

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


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
