"""What every admin page shares: rows scoped to the person's projects, the project column and filter, and a
read-only mixin for the audit lists."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import Http404, HttpRequest

from contexts.models import Project, ProjectRole
from contexts.selectors.projects import project_role, projects_editable_by, projects_for_user


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
            # A NUL, which PostgreSQL refuses in a query, never gets here: NulInAddressMiddleware answers 400.
            return queryset.filter(**{f"{self.project_path}__slug": self.value()})
        return queryset


class ProjectScopedAdmin(admin.ModelAdmin):
    """Rows of the projects the person is a member of (a superuser: all), a project column and filter. Another
    project's object is a 404 (so is one that does not exist: ids are not probed); changing or deleting one takes
    the editor role in its project, as on the staff pages."""

    # The lookup from the model to its Project ("project", "session__project", ...).
    project_path = "project"
    # Fields no page shows (a signing secret, a key's hash): no filter in the address may name them either, or a
    # list showing a row or not would answer guesses at them a character at a time (?secret__regex=^whsec_a).
    hidden_fields: frozenset[str] = frozenset()
    # What the admin's messages call one row.
    row_noun = "row"

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if self.hidden_fields & set(lookup.split(LOOKUP_SEP)):
            return False
        return super().lookup_allowed(lookup, value, request)

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

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (_delete_selected_editable, name, description)
        return actions

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, self.editable(request, queryset))


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


def _delete_selected_editable(modeladmin: ProjectScopedAdmin, request: HttpRequest, queryset: QuerySet) -> Any:
    """Django's "Delete selected", given only the rows the person may delete (the editor role in their project):
    its confirmation lists, its message counts and the admin's history logs only those."""
    allowed = modeladmin.editable(request, queryset)
    skipped = queryset.exclude(pk__in=allowed.values("pk")).count()
    if skipped:
        modeladmin.message_user(request, f"{skipped} selected {modeladmin.row_noun}(s) left out: deleting takes the "
                                         "editor role in their project.", level=messages.WARNING)
    if not allowed.exists():
        return None  # nothing to confirm: back to the list, with the warning
    return delete_selected(modeladmin, request, allowed)
