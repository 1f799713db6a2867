"""Response headers of the pages: Cache-Control for a signed-in person's answers, the Content-Security-Policy."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from csp.constants import SELF
from csp.middleware import CSPMiddleware
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.utils.cache import patch_cache_control

TIME_ZONE_COOKIE = "tz"  # set by static/contexts/app.js from the browser's Intl time zone


class NulInAddressMiddleware:
    """A page address whose query holds a NUL character is a 400. PostgreSQL refuses NUL in any query, so a value
    passed on to the database (the admin's list filters: `?status__exact=%00`) was a 500; no page has a use for one.
    The API (`/api/`) validates its parameters itself and answers field by field."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/") and any(
                "\x00" in name or any("\x00" in value for value in values) for name, values in request.GET.lists()):
            raise SuspiciousOperation("A NUL character in the address's query")
        return self.get_response(request)


class PrivatePagesMiddleware:
    """`Cache-Control: private, no-store` on every staff page, admin page, error page and htmx fragment a signed-in
    person gets (each shows their name and carries their CSRF token). The API (`/api/`) sets its own headers and is
    left alone, so an agent's call never loads a session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/api/") and request.user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
        return response


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """settings.CONTENT_SECURITY_POLICY everywhere; the API docs page may also show Swagger UI's data: icons.

    Swagger UI (drf-spectacular-sidecar) draws its icons as data: images from its script and stylesheet; only that
    page gets `img-src data:`. Its inline start-up script and style carry a nonce instead
    (templates/drf_spectacular/swagger_ui.html).
    """

    def get_policy_parts(self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False):
        parts = super().get_policy_parts(request, response, report_only)
        match = request.resolver_match
        if match is not None and match.view_name == "api-docs" and parts.update is None:
            parts.update = {"img-src": [SELF, "data:"]}
        return parts


class ViewerTimeZoneMiddleware:
    """Pages (the admin too) show times in the viewer's time zone, which app.js keeps in the `tz` cookie; an unknown
    or missing zone shows UTC, named as such. The API (`/api/`) always answers in UTC, cookie or not."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = "" if request.path.startswith("/api/") else request.COOKIES.get(TIME_ZONE_COOKIE, "")
        try:
            zone = zoneinfo.ZoneInfo(name) if name and len(name) <= 64 else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("Europe")
            zone = None
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
