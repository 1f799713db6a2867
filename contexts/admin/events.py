"""The event feed as recorded, webhook endpoints (registered and changed through contexts.services) and their
deliveries."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html

from contexts.exceptions import ApplicationError
from contexts.models import Event, WebhookDelivery, WebhookEndpoint
from contexts.selectors.projects import projects_for_user
from contexts.services import Actor, webhooks

from .base import ProjectScopedAdmin, ReadOnlyAdminMixin


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    """The event feed agents read (GET /api/v1/events), as it was recorded."""

    list_display = ("id", "type", "session", "created_at")
    list_filter = ("type",)
    search_fields = ("session__session_id",)
    list_select_related = ("session",)
    show_full_result_count = False
    ordering = ("-id",)


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
    hidden_fields = frozenset({"secret"})
    list_display = ("url", "description", "types", "is_active", "consecutive_failures", "disabled_at", "created_at")
    list_filter = ("is_active",)
    search_fields = ("url", "description")
    readonly_fields = ("project", "secret", "delivery_log", "is_active", "consecutive_failures", "disabled_at",
                       "disabled_reason", "created_at")
    actions = ("enable", "disable")
    row_noun = "endpoint"

    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        # Its delivery log goes with it: deliveries are read-only for everyone, which must not make the endpoint
        # undeletable (has_delete_permission still decides who may delete it).
        return deleted, model_count, set(), protected

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None):
        # The secret is generated on save: the add form asks only whose events, where and what to send.
        if obj is None:
            return ("project", "url", "description", "event_types")
        # The secret signs what the project's receivers trust (a staff reply is relayed to the customer): only
        # those who may change the endpoint (its project's editors) see it, not everyone who may view it.
        shown = [name for name in self.readonly_fields
                 if name != "secret" or self.has_change_permission(request, obj)]
        return ("url", "description", "event_types", *shown)

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


    @admin.action(description="Disable the selected endpoints (events are not sent until enabled again)",
                  permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        disabled = 0
        for endpoint in self.editable(request, queryset).filter(is_active=True):
            webhooks.webhook_endpoint_disable(endpoint=endpoint, actor=Actor.for_user(request.user))
            disabled += 1
        self.message_user(request, f"Disabled {disabled} endpoint(s); their pending deliveries wait until they are "
                                   "enabled again.", level=messages.SUCCESS if disabled else messages.WARNING)


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
    hidden_fields = frozenset({"secret"})  # the endpoint's, through endpoint__secret
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
        count = waiting = 0
        for delivery in self.editable(request, queryset).select_related("endpoint"):
            webhooks.webhook_delivery_resend(delivery=delivery)
            count += 1
            waiting += not delivery.endpoint.is_active
        message = f"{count} deliver{'y' if count == 1 else 'ies'} queued to be sent again."
        if waiting:
            # Nothing is sent to a disabled endpoint: enabling it sends its pending deliveries, these among them.
            message += (f" {waiting} of them wait{'s' if waiting == 1 else ''} because its endpoint is disabled: "
                        "they are sent once it is enabled (action “Enable the selected endpoints again”).")
        self.message_user(request, message, level=messages.WARNING if waiting else messages.SUCCESS)
