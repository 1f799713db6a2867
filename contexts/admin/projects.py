"""Projects: their settings, members and counts."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from contexts.models import ApiKey, Project, ProjectMembership, ProjectRole, SessionContext
from contexts.services.projects import membership_set, project_delete

from .base import ProjectScopedAdmin


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
    row_noun = "project"
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

    def has_delete_permission(self, request: HttpRequest, obj: Project | None = None) -> bool:
        # The default project is where keys and commands that name none go: it stays.
        return super().has_delete_permission(request, obj) and (obj is None or obj.slug != Project.DEFAULT_SLUG)

    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        # A project with sessions is protected (erase them first, with their audit record); one without takes its
        # keys, endpoints and memberships along, which are read-only or inline here and must not block that. The
        # default project stays, also when it is among the selected.
        refused = {"the default project"} if any(p.slug == Project.DEFAULT_SLUG for p in objs) else set()
        return deleted, model_count, refused, protected

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        project_delete(project=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        for project in self.editable(request, queryset).exclude(slug=Project.DEFAULT_SLUG):
            project_delete(project=project)

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
