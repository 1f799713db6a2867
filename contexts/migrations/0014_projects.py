"""Projects (tenants): every session, API key, event and webhook endpoint belongs to one. Existing data moves into
the `default` project, so a deployment keeps working with its keys unchanged; staff who had a role get the same
role in `default`. `session_id` becomes unique per project, and the list indexes lead with the project."""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def into_default(apps, schema_editor):
    Project = apps.get_model("contexts", "Project")
    default, _ = Project.objects.get_or_create(slug="default", defaults={"name": "Default"})
    for name in ("SessionContext", "ApiKey", "WebhookEndpoint", "DataDeletion"):
        apps.get_model("contexts", name).objects.update(project=default)
    Event = apps.get_model("contexts", "Event")
    for session_pk in Event.objects.values_list("session_id", flat=True).distinct().iterator():
        Event.objects.filter(session_id=session_pk).update(project=default)
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Membership = apps.get_model("contexts", "ProjectMembership")
    for user in User.objects.filter(is_superuser=False).prefetch_related("groups"):
        groups = {group.name for group in user.groups.all()}
        role = "editor" if "editor" in groups else "support" if ("support" in groups or user.is_staff) else None
        if role:
            Membership.objects.get_or_create(project=default, user=user, defaults={"role": role})


class Migration(migrations.Migration):
    dependencies = [
        ("contexts", "0013_session_update_policy"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Project",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("slug", models.CharField(max_length=50, unique=True, validators=[
                    django.core.validators.RegexValidator(
                        "^[a-z0-9][a-z0-9-]{0,49}$",
                        "Project slugs are 1-50 characters of a-z 0-9 -, starting with a letter or digit")])),
                ("name", models.CharField(max_length=100)),
                ("retention_days", models.PositiveIntegerField(
                    blank=True, null=True,
                    help_text="Delete conversations untouched this many days. Empty: the installation's "
                              "SESSIONCTX_RETENTION_DAYS (off unless set).")),
                ("daily_token_budget", models.PositiveBigIntegerField(
                    blank=True, null=True,
                    help_text="Model tokens per UTC day for this project. Empty: the installation's "
                              "SESSIONCTX_DAILY_TOKEN_BUDGET.")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["slug"]},
        ),
        migrations.CreateModel(
            name="ProjectMembership",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("role", models.CharField(choices=[("support", "Support (read, handle handoffs)"),
                                                   ("editor", "Editor (also edit and reset contexts)")],
                                          default="support", max_length=16)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("project", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="memberships",
                                              to="contexts.project")),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                           related_name="project_memberships", to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["project__slug", "user__username"],
                     "constraints": [models.UniqueConstraint(fields=("project", "user"), name="membership_once")]},
        ),
        # Nullable first, filled with the default project, then required.
        migrations.AddField("sessioncontext", "project", models.ForeignKey(
            db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="sessions",
            to="contexts.project")),
        migrations.AddField("apikey", "project", models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.CASCADE, related_name="api_keys", to="contexts.project")),
        migrations.AddField("event", "project", models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="contexts.project")),
        migrations.AddField("webhookendpoint", "project", models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.CASCADE, related_name="webhook_endpoints",
            to="contexts.project")),
        migrations.AddField("datadeletion", "project", models.ForeignKey(
            blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
            to="contexts.project")),
        migrations.AddField("apikey", "expires_at", models.DateTimeField(
            blank=True, null=True, help_text="Empty: the key does not expire.")),
        migrations.RunPython(into_default, migrations.RunPython.noop),
        # No index of its own: the unique constraint and every list index below lead with it.
        migrations.AlterField("sessioncontext", "project", models.ForeignKey(
            db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="sessions",
            to="contexts.project")),
        migrations.AlterField("apikey", "project", models.ForeignKey(
            on_delete=django.db.models.deletion.CASCADE, related_name="api_keys", to="contexts.project")),
        migrations.AlterField("event", "project", models.ForeignKey(
            on_delete=django.db.models.deletion.CASCADE, related_name="+", to="contexts.project")),
        migrations.AlterField("webhookendpoint", "project", models.ForeignKey(
            on_delete=django.db.models.deletion.CASCADE, related_name="webhook_endpoints", to="contexts.project")),
        migrations.AlterField("sessioncontext", "session_id", models.CharField(max_length=255, validators=[
            django.core.validators.RegexValidator(
                "^[A-Za-z0-9._:@-]{1,255}$", "Session ids are 1-255 characters of A-Z a-z 0-9 . _ : @ -")])),
        migrations.AddConstraint("sessioncontext", models.UniqueConstraint(
            fields=("project", "session_id"), name="session_unique_per_project")),
        migrations.RemoveIndex("sessioncontext", "ctx_updated_idx"),
        migrations.RemoveIndex("sessioncontext", "ctx_user_updated_idx"),
        migrations.RemoveIndex("sessioncontext", "ctx_agent_updated_idx"),
        migrations.RemoveIndex("sessioncontext", "ctx_status_updated_idx"),
        migrations.RemoveIndex("sessioncontext", "ctx_handoff_queue_idx"),
        migrations.AddIndex("sessioncontext", models.Index(fields=["project", "-updated_at", "-id"],
                                                           name="ctx_updated_idx")),
        migrations.AddIndex("sessioncontext", models.Index(fields=["project", "user_id", "-updated_at"],
                                                           name="ctx_user_updated_idx")),
        migrations.AddIndex("sessioncontext", models.Index(fields=["project", "agent_id", "-updated_at"],
                                                           name="ctx_agent_updated_idx")),
        migrations.AddIndex("sessioncontext", models.Index(fields=["project", "status", "-updated_at"],
                                                           name="ctx_status_updated_idx")),
        migrations.AddIndex("sessioncontext", models.Index(
            condition=models.Q(("status", "handoff_requested")), fields=["project", "handoff_requested_at"],
            name="ctx_handoff_queue_idx")),
        migrations.AddIndex("event", models.Index(fields=["project", "id"], name="event_project_idx")),
    ]
