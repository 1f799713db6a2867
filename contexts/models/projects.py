"""Projects (tenants) and the staff who work in them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

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
