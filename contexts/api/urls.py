"""Routes of the agent REST API (/api/v1/...) and its schema. No trailing slashes."""

from django.urls import path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import context, errors, events, exports, handoff, health, history, locks, messages, runs, sessions, usage, users


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
    path("api/v1/health", health.HealthApi.as_view(), name="api-health"),
    path("api/v1/health/live", health.HealthLiveApi.as_view(), name="api-health-live"),
    path("api/v1/health/ready", health.HealthReadyApi.as_view(), name="api-health-ready"),
    path("api/v1/sessions", sessions.SessionListApi.as_view(), name="api-sessions"),
    path(S, sessions.SessionApi.as_view(), name="api-session"),
    path(f"{S}/context", context.ContextApi.as_view(), name="api-context"),
    path(f"{S}/context/prompt", context.ContextPromptApi.as_view(), name="api-context-prompt"),
    path(f"{S}/context/reset", context.ContextResetApi.as_view(), name="api-context-reset"),
    path(f"{S}/context/update", context.ContextUpdateRequestApi.as_view(), name="api-context-update"),
    path(f"{S}/revisions", history.RevisionListApi.as_view(), name="api-revisions"),
    path(f"{S}/revisions/<int:version>/revert", history.RevisionRevertApi.as_view(), name="api-revision-revert"),
    path(f"{S}/messages", messages.MessagesApi.as_view(), name="api-messages"),
    path(f"{S}/handoff", handoff.HandoffApi.as_view(), name="api-handoff"),
    path(f"{S}/locks", locks.LocksApi.as_view(), name="api-locks"),
    path(f"{S}/runs", runs.SessionRunListApi.as_view(), name="api-session-runs"),
    path(f"{S}/usage", usage.SessionUsageApi.as_view(), name="api-session-usage"),
    path(f"{S}/export", exports.SessionExportApi.as_view(), name="api-session-export"),
    path("api/v1/users/<str:user_id>", users.UserApi.as_view(), name="api-user"),
    path("api/v1/users/<str:user_id>/export", exports.UserExportApi.as_view(), name="api-user-export"),
    path("api/v1/runs/<uuid:run_id>", runs.RunApi.as_view(), name="api-run"),
    path("api/v1/events", events.EventListApi.as_view(), name="api-events"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Last: any other /api/ path answers the JSON error shape ([\s\S], not `.`: a path may hold a line break).
    re_path(r"^api/(?P<path>[\s\S]*)\Z", errors.api_not_found, name="api-not-found"),
]
