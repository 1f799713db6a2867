"""The REST API (Django REST framework) and its OpenAPI schema (drf-spectacular)."""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from .env import env, env_int

__all__ = [
    "API_KEY_FAILURE_RATE", "API_THROTTLE_RATE", "REST_FRAMEWORK", "SPECTACULAR_SETTINGS",
]

def _rate(name: str, default: str, *, counted: str, examples: str) -> str:
    """A DRF rate, "N/period" (s, m, h or d; "6000/min"), from the environment. Checked here: DRF reads it only
    at the first request, and a bad value would then make every authenticated call a 500. N is at least 1: a
    rate of 0 refuses every call (or, for refused keys, every key not in the read cache) before any was made."""
    value = env(name, default)
    if not re.fullmatch(r"0*[1-9][0-9]*/(s|m|h|d)[a-z]*", value):
        raise ImproperlyConfigured(f"{name} must be {counted} per period (at least 1) such as {examples}, "
                                   f"not {value!r}")
    return value


# Requests per key.
API_THROTTLE_RATE = _rate("API_THROTTLE_RATE", "6000/min", counted="requests",
                          examples="6000/min, 100/s or 50000/hour")
# Refused API keys one client address may send per period before its keyed requests are refused (429).
API_KEY_FAILURE_RATE = _rate("API_KEY_FAILURE_RATE", "60/min", counted="refused keys", examples="60/min")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["contexts.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["contexts.api.auth.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "contexts.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["contexts.api.throttle.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": API_THROTTLE_RATE, "api_key_failures": API_KEY_FAILURE_RATE},
    # Client IPs are read from X-Forwarded-For only behind this many trusted proxies.
    # Unset means no proxy (0): DRF's own default (None) would trust any X-Forwarded-For a client sends.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "sessionctx API",
    "DESCRIPTION": "Session context for LLM-agent conversations: snapshots, messages, history, handoff.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "contexts.api.openapi.strict_request_bodies"],
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": "contexts.models.Status",
        "RunStatusEnum": "contexts.api.serializers.RunStatus",
        # The fields a lock names, in the locks API and in export documents alike.
        "LockableFieldEnum": "contexts.services.locks.LOCKABLE_FIELDS",
    },
    "PATH_CONVERTER_OVERRIDES": {
        # contexts.snapshot.validate_session_id: not dots alone.
        "session_id": {"type": "string", "pattern": r"^(?!\.+$)[A-Za-z0-9._:@-]{1,255}$", "maxLength": 255},
    },
}
