"""Data protection: erasing end users from the session list, and the record of every deletion."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from contexts.models import DataDeletion, Project, SessionContext
from contexts.services import Actor
from contexts.services.governance import user_erase

from .base import ProjectScopedAdmin, ReadOnlyAdminMixin


class UserErasureMixin:
    """The session list's "erase these end users" action (a ProjectScopedAdmin of sessions)."""

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


@admin.register(DataDeletion)
class DataDeletionAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    list_display = ("created_at", "kind", "actor", "counts", "criteria")
    list_filter = ("kind",)
    date_hierarchy = "created_at"
