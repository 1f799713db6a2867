"""Routes of the agent REST API (/api/v1/...) and its schema. No trailing slashes."""

from django.urls import path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import api


class SessionIdConverter:
    """Anything up to the next slash: the view checks the id and answers 400, not a bare 404."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SessionIdConverter, "session_id")

S = "api/v1/sessions/<session_id:session_id>"

urlpatterns = [
    path("api/v1/health", api.HealthApi.as_view(), name="api-health"),
    path("api/v1/sessions", api.SessionListApi.as_view(), name="api-sessions"),
    path(S, api.SessionApi.as_view(), name="api-session"),
    path(f"{S}/context", api.ContextApi.as_view(), name="api-context"),
    path(f"{S}/context/prompt", api.ContextPromptApi.as_view(), name="api-context-prompt"),
    path(f"{S}/context/reset", api.ContextResetApi.as_view(), name="api-context-reset"),
    path(f"{S}/context/update", api.ContextUpdateRequestApi.as_view(), name="api-context-update"),
    path(f"{S}/revisions", api.RevisionListApi.as_view(), name="api-revisions"),
    path(f"{S}/revisions/<int:version>/revert", api.RevisionRevertApi.as_view(), name="api-revision-revert"),
    path(f"{S}/messages", api.MessagesApi.as_view(), name="api-messages"),
    path(f"{S}/handoff", api.HandoffApi.as_view(), name="api-handoff"),
    path(f"{S}/runs", api.SessionRunListApi.as_view(), name="api-session-runs"),
    path("api/v1/runs/<uuid:run_id>", api.RunApi.as_view(), name="api-run"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Last: any other /api/ path answers the JSON error shape.
    re_path(r"^api/(?P<path>.*)$", api.api_not_found, name="api-not-found"),
]
