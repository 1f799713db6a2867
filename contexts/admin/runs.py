"""Extraction runs, and the cost per day and project."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from contexts.models import ExtractionRun
from contexts.selectors import usage
from contexts.selectors.projects import projects_for_user

from .base import ProjectScopedAdmin, ReadOnlyAdminMixin


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
