"""Django admin: every snapshot and key change goes through contexts.services; revisions are read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html

from . import services
from .exceptions import ApplicationError
from .models import (
    ApiKey,
    DataDeletion,
    Event,
    ExtractionRun,
    HandoffEvent,
    LockChange,
    Message,
    Project,
    ProjectMembership,
    ProjectRole,
    Proposal,
    Revision,
    SessionContext,
    WebhookDelivery,
    WebhookEndpoint,
)
from .selectors import usage
from .selectors.projects import project_role, projects_editable_by, projects_for_user
from .services import Actor, webhooks
from .services.governance import user_erase
from .services.locks import LOCKABLE_FIELDS, locked_fields, locks_set
from .services.projects import membership_set
from .snapshot import REASON_MAX_CHARS, validate_snapshot

CONTENT_FIELDS = ("mode", "summary", "goal", "plan", "progress", "handoff_note")


class ReadOnlyAdminMixin:
    """Visible to those who may view; nobody adds, changes or deletes through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ProjectFilter(admin.SimpleListFilter):
    """The projects the person may see (not every project: their names are not everyone's business)."""

    title = "project"
    parameter_name = "project"

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: ProjectScopedAdmin) -> None:
        self.project_path = model_admin.project_path
        super().__init__(request, params, model, model_admin)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(p.slug, p.slug) for p in projects_for_user(request.user)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(**{f"{self.project_path}__slug": self.value()})
        return queryset


class ProjectScopedAdmin(admin.ModelAdmin):
    """Rows of the projects the person is a member of (a superuser: all), a project column and filter. Another
    project's object is a 404 (so is one that does not exist: ids are not probed); changing or deleting one takes
    the editor role in its project, as on the staff pages."""

    # The lookup from the model to its Project ("project", "session__project", ...).
    project_path = "project"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.project_path}__in": projects_for_user(request.user).values("pk")})

    def editable(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """The rows of `queryset` in projects where the person is an editor (for actions that change them)."""
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.project_path}__in": projects_editable_by(request.user).values("pk")})

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with id {object_id!r}.")
        return obj

    def project_id_of(self, obj: Any) -> int | None:
        *through, last = self.project_path.split("__")
        for name in through:
            obj = getattr(obj, name, None)
        return getattr(obj, f"{last}_id", None) if obj is not None else None

    def _may_edit(self, request: HttpRequest, obj: Any) -> bool:
        if obj is None or request.user.is_superuser:
            return True
        return project_role(request.user, self.project_id_of(obj)) == ProjectRole.EDITOR

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._may_edit(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_edit(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Project:
            # New keys and endpoints go where the person is an editor.
            kwargs["queryset"] = projects_editable_by(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if self.project_path == "project" and "project" not in initial:
            # The person's only project, or for a superuser the default one: the form asks no more than before.
            choices = list(projects_editable_by(request.user))
            pick = choices[0] if len(choices) == 1 else None
            if pick is None and request.user.is_superuser:
                pick = next((p for p in choices if p.slug == Project.DEFAULT_SLUG), None)
            if pick is not None:
                initial["project"] = pick.pk
        return initial

    def get_list_display(self, request: HttpRequest) -> tuple:
        first, *rest = super().get_list_display(request)
        return (first, "project_label", *rest)

    def get_list_filter(self, request: HttpRequest) -> tuple:
        return (ProjectFilter, *super().get_list_filter(request))

    def get_list_select_related(self, request: HttpRequest) -> Any:
        related = super().get_list_select_related(request)
        if related is True:
            return True
        return (*(related or ()), self.project_path)

    @admin.display(description="Project")
    def project_label(self, obj: Any) -> str:
        for name in self.project_path.split("__"):
            obj = getattr(obj, name, None)
        return obj.slug if obj is not None else "–"


class ProjectMembershipInline(admin.TabularInline):
    model = ProjectMembership
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)
    extra = 0


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    """Projects with their settings and members; a non-superuser sees the ones they are a member of and changes
    those where they are an editor."""

    project_path = "pk"
    list_display = ("slug", "name", "retention_days", "daily_token_budget", "session_count", "key_count",
                    "created_at")
    search_fields = ("slug", "name")
    fields = ("slug", "name", "retention_days", "daily_token_budget", "created_at")
    readonly_fields = ("created_at",)
    inlines = (ProjectMembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        qs = super().get_queryset(request)
        # Subqueries, not two COUNT joins: those would multiply each other.
        sessions = (SessionContext.objects.filter(project=OuterRef("pk")).order_by().values("project")
                    .annotate(n=Count("pk")).values("n"))
        keys = ApiKey.objects.filter(project=OuterRef("pk")).order_by().values("project").annotate(n=Count("pk"))
        return qs.annotate(session_count=Coalesce(Subquery(sessions, output_field=IntegerField()), 0),
                           key_count=Coalesce(Subquery(keys.values("n"), output_field=IntegerField()), 0))

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None):
        # The slug names the project in commands, links and exports: fixed once it exists.
        return ("slug", *self.readonly_fields) if obj is not None else self.readonly_fields

    def project_id_of(self, obj: Project) -> int | None:
        return obj.pk

    def get_list_display(self, request: HttpRequest) -> tuple:
        return self.list_display

    def get_list_filter(self, request: HttpRequest) -> tuple:
        return ()

    def get_list_select_related(self, request: HttpRequest) -> Any:
        return False

    @admin.display(description="Sessions", ordering="session_count")
    def session_count(self, obj: Project) -> int:
        return obj.session_count

    @admin.display(description="API keys", ordering="key_count")
    def key_count(self, obj: Project) -> int:
        return obj.key_count

    def save_model(self, request: HttpRequest, obj: Project, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change and not request.user.is_superuser:
            # Whoever may create a project works in it: otherwise it would vanish from their own list.
            membership_set(project=obj, user=request.user, role=ProjectRole.EDITOR)


class RevisionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Revision
    fields = ("version", "source", "actor", "reason", "changed_fields", "created_at")
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    max_num = 0
    show_change_link = True


class ProposalInline(ReadOnlyAdminMixin, admin.TabularInline):
    """What extractions would have written to locked fields; accept or dismiss them on the staff session page."""

    model = Proposal
    fields = ("field", "value", "from_run", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0


class LockChangeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LockChange
    verbose_name_plural = "Lock changes (fields locked after each)"
    fields = ("fields", "reason", "actor", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0


class StepsField(forms.CharField):
    """A plan or progress list edited as text, one step per line (blank lines dropped)."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 80})

    def prepare_value(self, value: Any) -> str:
        return "\n".join(value) if isinstance(value, list) else super().prepare_value(value)

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class SessionContextForm(forms.ModelForm):
    plan = StepsField(required=False, help_text="One step per line.")
    progress = StepsField(required=False, help_text="One done step per line.")
    # The version the page was loaded at: a save from a stale page is refused, not applied.
    loaded_version = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(required=False, max_length=REASON_MAX_CHARS,
                             help_text="Kept with the revision this edit writes.")
    locked_fields = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, choices=[(n, n.capitalize()) for n in LOCKABLE_FIELDS],
        help_text="Model updates leave a locked field alone and propose instead; agents' writes to it get 423.")
    lock_reason = forms.CharField(required=False, max_length=REASON_MAX_CHARS, help_text="Required to lock a field.")

    class Meta:
        model = SessionContext
        fields = (*CONTENT_FIELDS, "update_policy")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["loaded_version"].initial = self.instance.version
            self.fields["locked_fields"].initial = sorted(locked_fields(self.instance))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            validate_snapshot({name: cleaned.get(name) for name in CONTENT_FIELDS if name in cleaned})
        except ApplicationError as exc:
            for name, text in exc.details.get("fields", {}).items():
                self.add_error(name if name in self.fields else None, text)
        if "locked_fields" in self.changed_data and cleaned.get("locked_fields") and not cleaned.get("lock_reason"):
            self.add_error("lock_reason", "A reason is required to lock a field.")
        loaded = cleaned.get("loaded_version")
        current = SessionContext.objects.filter(pk=self.instance.pk).values_list("version", flat=True).first()
        if loaded is not None and current is not None and loaded != current:
            raise forms.ValidationError(
                f"This context changed while you edited it (now version {current}, you loaded {loaded}). "
                "Nothing was saved; reload the page and apply your change again.")
        return cleaned


@admin.register(SessionContext)
class SessionContextAdmin(ProjectScopedAdmin):
    form = SessionContextForm
    list_display = ("session_id", "user_id", "agent_id", "mode", "status", "version", "updated_at")
    list_filter = ("status", "mode")
    search_fields = ("session_id", "user_id", "agent_id", "summary", "goal")
    show_full_result_count = False  # no COUNT(*) over a big table on every list page
    list_per_page = 50
    readonly_fields = ("project", "session_id", "user_id", "agent_id", "team_id", "status", "assignee",
                       "handoff_reason", "version", "last_message_seq", "cursor_seq", "created_at", "updated_at",
                       "transcript")
    fieldsets = (
        (None, {"fields": ("project", "session_id", "user_id", "agent_id", "team_id", "status", "assignee", "version",
                           "transcript")}),
        ("Snapshot (saved as a new revision)",
         {"fields": ("mode", "summary", "goal", "plan", "progress", "handoff_note", "reason", "loaded_version")}),
        ("Updates", {"fields": ("update_policy",)}),
        ("Locks", {"fields": ("locked_fields", "lock_reason")}),
        ("Bookkeeping", {"classes": ("collapse",),
                         "fields": ("handoff_reason", "last_message_seq", "cursor_seq", "created_at", "updated_at")}),
    )
    inlines = (ProposalInline, LockChangeInline, RevisionInline)
    actions = ("delete_selected", "erase_users")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SessionContext]:
        return super().get_queryset(request).select_related("assignee")

    @admin.action(description="Erase every session of the selected sessions' end users", permissions=["delete"])
    def erase_users(self, request: HttpRequest, queryset: QuerySet[SessionContext]) -> HttpResponse | None:
        """The right to erasure from the admin: a confirmation page listing the users, then user_erase for each.
        User ids are each project's own: a user is erased in the projects of the selected sessions only, and only
        where the person is an editor."""
        chosen = queryset.exclude(user_id="")
        allowed = self.editable(request, chosen)
        skipped = sorted(set(chosen.exclude(pk__in=allowed.values("pk")).values_list("project__slug", flat=True)))
        if skipped:
            self.message_user(request, f"Not erased in project(s) {', '.join(skipped)}: erasing takes the editor "
                                       "role there.", level=messages.WARNING)
        pairs = sorted(set(allowed.values_list("project__slug", "project_id", "user_id")))
        if not pairs:
            if not skipped:
                self.message_user(request, "None of the selected sessions has a user id.", level=messages.WARNING)
            return None
        if request.POST.get("post") != "yes":
            return TemplateResponse(request, "admin/contexts/sessioncontext/erase_users_confirmation.html", {
                **self.admin_site.each_context(request), "title": "Erase these end users' sessions?",
                "opts": self.model._meta, "selected": queryset.values_list("pk", flat=True),
                "users": [(slug, user_id, SessionContext.objects.filter(project_id=pk, user_id=user_id).count())
                          for slug, pk, user_id in pairs],
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            })
        projects = Project.objects.in_bulk({pk for _slug, pk, _user in pairs})
        for slug, pk, user_id in pairs:
            record = user_erase(user_id=user_id, project=projects[pk], actor=Actor.for_user(request.user))
            counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in record.counts.items() if n)
            self.message_user(request, f"Erased user {user_id} in project {slug}: "
                                       f"{counts or 'nothing left to delete'}.", level=messages.SUCCESS)
        return None

    @admin.display(description="Transcript")
    def transcript(self, obj: SessionContext) -> str:
        # A link to the paged message list: a long conversation would not fit on this page.
        url = reverse("admin:contexts_message_changelist") + f"?session__id__exact={obj.pk}"
        return format_html('<a href="{}">{} messages</a>', url, obj.last_message_seq)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions come from agents through the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and request.user.has_perm("contexts.edit_context")

    def save_model(self, request: HttpRequest, obj: SessionContext, form: SessionContextForm, change: bool) -> None:
        if "update_policy" in form.changed_data:
            # Not part of the snapshot: no revision, no version check.
            services.session_update_policy_set(session=obj, update_policy=form.cleaned_data["update_policy"])
        if "locked_fields" in form.changed_data:
            locks_set(session=obj, fields=form.cleaned_data["locked_fields"], reason=form.cleaned_data["lock_reason"],
                      actor=Actor.for_user(request.user))
        changes = {name: form.cleaned_data[name] for name in CONTENT_FIELDS if name in form.changed_data}
        if not changes:
            return
        try:
            services.snapshot_update(
                session=SessionContext.objects.get(pk=obj.pk), expected_version=form.cleaned_data["loaded_version"],
                changes=changes, source=Revision.Source.ADMIN, actor=Actor.for_user(request.user),
                reason=form.cleaned_data.get("reason", ""),
            )
        except ApplicationError as exc:
            # Raced between clean() and here: report it; the stored snapshot is untouched.
            self.message_user(request, exc.message, level=messages.ERROR)

    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        # Erasing a session (right to erasure) takes its history with it; read-only revisions do not block that.
        return deleted, model_count, set(), protected

    def delete_model(self, request: HttpRequest, obj: SessionContext) -> None:
        services.session_delete(session=obj, actor=Actor.for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SessionContext]) -> None:
        allowed = self.editable(request, queryset)
        skipped = queryset.exclude(pk__in=allowed.values("pk")).count()
        if skipped:
            self.message_user(request, f"{skipped} session(s) not deleted: deleting takes the editor role in their "
                                       "project.", level=messages.WARNING)
        for session in allowed:
            services.session_delete(session=session, actor=Actor.for_user(request.user))


@admin.register(DataDeletion)
class DataDeletionAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    list_display = ("created_at", "kind", "actor", "counts", "criteria")
    list_filter = ("kind",)
    date_hierarchy = "created_at"


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "session__project"
    list_display = ("session", "version", "source", "actor", "created_at")
    list_filter = ("source",)
    search_fields = ("session__session_id", "actor", "reason")
    list_select_related = ("session",)
    show_full_result_count = False


@admin.register(ExtractionRun)
class ExtractionRunAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "session__project"
    list_display = ("id", "session", "status", "trigger", "extractor", "model", "prompt_tokens",
                    "completion_tokens", "cost_usd", "latency_ms", "created_at")
    list_filter = ("status", "extractor", "trigger")
    search_fields = ("id", "session__session_id", "model", "error")
    list_select_related = ("session",)
    show_full_result_count = False
    change_list_template = "admin/contexts/extractionrun/change_list.html"  # links the cost per day

    def get_urls(self):
        view = self.admin_site.admin_view(self.cost_per_day_view)
        return [path("cost-per-day/", view, name="contexts_extractionrun_cost_per_day"), *super().get_urls()]

    def cost_per_day_view(self, request: HttpRequest) -> HttpResponse:
        """Runs, tokens and cost per day and project over the last 30 days, of the projects the person sees, with
        each project's tokens today against its daily budget."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        projects = projects_for_user(request.user)
        budgets = [(p, usage.tokens_today(project=p), usage.daily_token_budget(p), p.daily_token_budget is not None)
                   for p in projects]
        context = {
            **self.admin_site.each_context(request), "title": "Cost per day", "opts": self.opts,
            "days": usage.cost_per_day(days=30, projects=projects), "budgets": budgets,
            "prices": sorted(settings.SESSIONCTX_MODEL_PRICES.items()),
        }
        return TemplateResponse(request, "admin/contexts/extractionrun/cost_per_day.html", context)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "session__project"
    list_display = ("session", "seq", "role", "author", "short_content", "created_at")
    list_filter = ("role",)
    search_fields = ("session__session_id",)
    list_select_related = ("session", "author")
    ordering = ("session", "seq")
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content if len(obj.content) <= 200 else obj.content[:200] + "…"


@admin.register(HandoffEvent)
class HandoffEventAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "session__project"
    list_display = ("session", "kind", "actor", "created_at")
    list_filter = ("kind",)
    search_fields = ("session__session_id", "actor", "note")
    list_select_related = ("session",)


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    """The event feed agents read (GET /api/v1/events), as it was recorded."""

    list_display = ("id", "type", "session", "created_at")
    list_filter = ("type",)
    search_fields = ("session__session_id",)
    list_select_related = ("session",)
    show_full_result_count = False
    ordering = ("-id",)


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=["read"])

    class Meta:
        model = ApiKey
        fields = ("project", "name", "expires_at")

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(ApiKey)
class ApiKeyAdmin(ProjectScopedAdmin):
    list_display = ("name", "prefix", "scopes", "is_active", "created_by", "created_at", "last_used_at", "expires_at",
                    "revoked_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    # The hash is never shown; the key itself is shown once, right after it is created.
    readonly_fields = ("project", "name", "prefix", "scopes", "is_active", "created_by", "created_at", "last_used_at",
                       "expires_at", "revoked_at")
    add_fields = ("project", "name", "scopes", "expires_at")
    fields = readonly_fields
    actions = ("revoke",)

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, **kwargs: Any):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
            kwargs["fields"] = self.add_fields
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        return self.add_fields if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        return () if obj is None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: requests the key made stay attributable

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            return  # every field is read-only after creation
        data = form.cleaned_data
        key, raw_key = services.api_key_create(name=data["name"], scopes=data["scopes"], project=data["project"],
                                               expires_at=data.get("expires_at"), created_by=request.user)
        for f in ApiKey._meta.concrete_fields:
            setattr(obj, f.attname, getattr(key, f.attname))
        # For response_add only: never a message (the messages cookie is signed, not encrypted), session or log.
        obj.raw_key = raw_key

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        """The answer to the add form is the one page that shows the new key (never cached: admin pages are not)."""
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created", "subtitle": str(obj), "opts": opts, "api_key": obj,
            "raw_key": obj.raw_key,
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist",
                                      current_app=self.admin_site.name),
            "add_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_add", current_app=self.admin_site.name),
        }
        return TemplateResponse(request, "admin/contexts/apikey/created.html", context)

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in self.editable(request, queryset).filter(is_active=True):
            try:
                services.api_key_revoke(api_key=key)
            except ApplicationError as exc:
                # The service refused (the cache could not be told): say so and stop, rather than a 500 page
                # that hides which keys were revoked before it.
                self.message_user(request, f"{key}: {exc.message}", level=messages.ERROR)
                break
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", level=messages.SUCCESS if revoked else
                          messages.WARNING)


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", help_text="http(s) URL the events are POSTed to.")
    event_types = forms.MultipleChoiceField(
        choices=Event.Type.choices, widget=forms.CheckboxSelectMultiple, required=False,
        help_text="None ticked: every event type, including types added later.")

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "event_types")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if url != self.instance.url:
            try:
                webhooks.webhook_url_check(url)
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from None
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ProjectScopedAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "description", "types", "is_active", "consecutive_failures", "disabled_at", "created_at")
    list_filter = ("is_active",)
    search_fields = ("url", "description")
    readonly_fields = ("project", "secret", "delivery_log", "is_active", "consecutive_failures", "disabled_at",
                       "disabled_reason", "created_at")
    actions = ("enable",)

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None):
        # The secret is generated on save: the add form asks only whose events, where and what to send.
        return ("project", "url", "description", "event_types") if obj is None else (
            "url", "description", "event_types", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None):
        return () if obj is None else self.readonly_fields

    @admin.display(description="Event types")
    def types(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types) or "all"

    @admin.display(description="Signing secret")
    def secret(self, obj: WebhookEndpoint) -> str:
        return obj.secret

    @admin.display(description="Deliveries")
    def delivery_log(self, obj: WebhookEndpoint) -> str:
        url = reverse("admin:contexts_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">Delivery log ({} deliveries)</a>', url, obj.deliveries.count())

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        try:
            if change:
                saved = webhooks.webhook_endpoint_update(endpoint=obj, url=data["url"],
                                                         event_types=data["event_types"],
                                                         description=data["description"])
            else:
                saved = webhooks.webhook_endpoint_create(url=data["url"], event_types=data["event_types"],
                                                         description=data["description"], project=data["project"])
        except ApplicationError as exc:
            # The name resolved elsewhere between clean() and here: say that nothing was saved.
            self.message_user(request, f"Not saved: {exc.message}", level=messages.ERROR)
            return
        for f in WebhookEndpoint._meta.concrete_fields:
            setattr(obj, f.attname, getattr(saved, f.attname))

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None):
        if obj.pk is None:
            return HttpResponseRedirect(reverse("admin:contexts_webhookendpoint_changelist"))
        # The receiver needs the secret to verify signatures: open the page that shows it.
        self.message_user(request, "Endpoint registered. Copy its signing secret below into the receiver.",
                          level=messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:contexts_webhookendpoint_change", args=[obj.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        endpoint = self.get_queryset(request).filter(pk=object_id).first() if object_id.isdigit() else None
        if endpoint is not None and not endpoint.is_active and request.method == "GET":
            self.message_user(request, _disabled_notice(endpoint), level=messages.WARNING)
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if request.method == "GET":
            for endpoint in self.get_queryset(request).filter(is_active=False, disabled_at__isnull=False)[:5]:
                self.message_user(request, _disabled_notice(endpoint), level=messages.WARNING)
        return super().changelist_view(request, extra_context)

    @admin.action(description="Enable the selected endpoints again", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        enabled = 0
        for endpoint in self.editable(request, queryset).filter(is_active=False):
            webhooks.webhook_endpoint_enable(endpoint=endpoint)
            enabled += 1
        self.message_user(request, f"Enabled {enabled} endpoint(s); their pending deliveries are sent now.",
                          level=messages.SUCCESS if enabled else messages.WARNING)


def _disabled_notice(endpoint: WebhookEndpoint) -> str:
    # The admin's own format, in the viewer's zone (ViewerTimeZoneMiddleware), like every time on the page.
    when = formats.date_format(timezone.localtime(endpoint.disabled_at), "DATETIME_FORMAT") \
        if endpoint.disabled_at else "?"
    return (f"Webhook endpoint {endpoint.url} was disabled on {when}: {endpoint.disabled_reason} "
            "Events are not sent to it until it is enabled again (action “Enable the selected endpoints again”).")


class EndpointFilter(admin.SimpleListFilter):
    """The endpoints of the projects the person sees (the endpoint page's delivery log links here)."""

    title = "endpoint"
    parameter_name = "endpoint__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        endpoints = WebhookEndpoint.objects.order_by("url", "pk")
        if not request.user.is_superuser:
            endpoints = endpoints.filter(project__in=projects_for_user(request.user).values("pk"))
        return [(str(pk), url) for pk, url in endpoints.values_list("pk", "url")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(endpoint_id=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "endpoint__project"
    list_display = ("event_id", "event_type", "endpoint", "status", "response_code", "attempts", "next_attempt_at",
                    "delivered_at", "last_error", "created_at")
    list_filter = ("status", EndpointFilter)
    search_fields = ("endpoint__url", "event__session__session_id", "last_error")
    list_select_related = ("endpoint", "event")
    show_full_result_count = False
    ordering = ("-id",)
    actions = ("send_again",)

    @admin.display(description="Event type")
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.type

    def has_send_again_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("contexts.change_webhookendpoint")

    @admin.action(description="Send the selected deliveries again", permissions=["send_again"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = 0
        for delivery in self.editable(request, queryset):
            webhooks.webhook_delivery_resend(delivery=delivery)
            count += 1
        self.message_user(request, f"{count} deliver{'y' if count == 1 else 'ies'} queued to be sent again.",
                          level=messages.SUCCESS)
