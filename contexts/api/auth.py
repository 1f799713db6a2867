"""API key authentication and scope permissions: the one key check of every API request."""

from __future__ import annotations

from collections.abc import Callable

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from ..models import ApiKey
from ..services import api_key_authenticate
from ..services.api_keys import ApiKeyExpired, api_key_recheck
from .throttle import KeyGuessThrottle

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Query parameters people try for keys. Keys in URLs end up in logs and browser history, so a request carrying
# one is refused outright rather than silently treated as anonymous.
KEY_QUERY_PARAMS = ("key", "api_key", "apikey", "token", "access_token", "bearer")


class KeyExpired(exceptions.AuthenticationFailed):
    default_code = "key_expired"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`; keys are never accepted in the query string."""

    keyword = "Bearer"

    def authenticate(self, request):
        if any(name in request.query_params for name in KEY_QUERY_PARAMS):
            raise exceptions.AuthenticationFailed(
                "API keys are not accepted in the URL; send 'Authorization: Bearer <key>'.")
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <key>'.")
        guesses = KeyGuessThrottle()
        try:
            raw_key = header[1].decode()
            return (None, _refused_unless_valid(
                lambda: api_key_authenticate(raw_key, before_database=lambda: guesses.check(request))))
        except (UnicodeError, exceptions.AuthenticationFailed) as refused:
            guesses.failed(request)
            if isinstance(refused, UnicodeError):
                raise exceptions.AuthenticationFailed("Invalid API key.") from None
            raise

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


def _refused_unless_valid(check: Callable[[], ApiKey | None]) -> ApiKey:
    """The key `check` finds, or the 401 of a revoked (unknown) or expired key."""
    try:
        key = check()
    except ApiKeyExpired as expired:
        raise KeyExpired(f"This API key expired at {expired.args[0].isoformat()}; ask an admin for a new "
                         "one.") from None
    if key is None:
        raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
    return key


def still_authenticated(request) -> None:
    """Refuse (401) a request whose key was revoked or expired since it was authenticated: a long poll asks
    before it answers with what happened while it waited."""
    _refused_unless_valid(lambda: api_key_recheck(request.auth))


class HasScope(permissions.BasePermission):
    """Reads need the `read` scope, everything else `write`."""

    message = "This API key does not have the scope this request needs."

    def has_permission(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key: Authorization: Bearer <key>.")
        return key.has_scope(required_scope(request, view))


def required_scope(request, view) -> str:
    return getattr(view, "required_scope", None) or ("read" if request.method in SAFE_METHODS else "write")


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the Bearer API key in the OpenAPI schema."""

    target_class = "contexts.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sck_<prefix>_<secret>",
            "description": "An API key sent as `Authorization: Bearer <key>`. Reads need the `read` scope, "
                           "writes the `write` scope. Create one with `python manage.py create_api_key NAME "
                           "--scopes read,write`.",
        }
