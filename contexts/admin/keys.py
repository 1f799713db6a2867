"""API keys: created through contexts.services (the key is shown once), revoked, never deleted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from contexts import services
from contexts.exceptions import ApplicationError
from contexts.models import ApiKey

from .base import ProjectScopedAdmin

MAX_LIFETIME = timedelta(days=36500)  # as create_api_key's --expires-in-days


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
        # As create_api_key's bound: a date at the calendar's end (9999-12-31 for "never") cannot be stored from a
        # zone west of UTC, nor shown in one east of it. Leave it empty for a key that never expires.
        if expires_at is not None and expires_at - timezone.now() > MAX_LIFETIME:
            raise forms.ValidationError("The expiry must be within 100 years; leave it empty for a key that never "
                                        "expires.")
        return expires_at


@admin.register(ApiKey)
class ApiKeyAdmin(ProjectScopedAdmin):
    hidden_fields = frozenset({"key_hash"})
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
