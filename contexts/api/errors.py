"""Every API error answers one JSON shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework.response import Response

from ..exceptions import ApplicationError, NotFound, PayloadTooLarge
from ..infra.middleware import RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)


def api_exception_handler(exc, context):
    """DRF exception handler: every error answers {"error": {"code", "message", "details"}}."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = PayloadTooLarge(f"The request body is larger than {limit} bytes.", details={"max_bytes": limit})
    if isinstance(exc, ApplicationError):
        body = exc.as_dict()
        fields = body["error"]["details"].get("fields")
        if isinstance(fields, dict):
            # One shape whichever layer refused a field: DRF's serializers give {name: [messages]}, a service one
            # sentence, which goes in a list too.
            body["error"]["details"] = {**body["error"]["details"], "fields": {
                name: [value] if isinstance(value, str) else value for name, value in fields.items()}}
        # Unavailable for a moment (the database, the read cache): when to try again, as for any call that meets a
        # database outage (contexts.infra.middleware).
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
        return Response(body, status=exc.status, headers=headers)
    if isinstance(exc, SuspiciousOperation):
        # What Django answers 400 before a view runs, met inside one (more than DATA_UPLOAD_MAX_NUMBER_FIELDS query
        # parameters, read by the first look at them): a 400 here too, logged as Django logs it, not a 500.
        logging.getLogger(f"django.security.{exc.__class__.__name__}").warning("%s", exc)
        return Response({"error": {"code": "bad_request", "message": f"The request could not be understood: {exc}",
                                   "details": {}}}, status=400)
    if isinstance(exc, Http404):
        exc = drf.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, OperationalError | InterfaceError):
        return None  # re-raised: contexts.infra.middleware.DatabaseUnavailableMiddleware answers 503
    if not isinstance(exc, drf.APIException):
        # A bug, or a database that went away: agents still get the one JSON shape, and the
        # traceback goes to the log instead of the response.
        logger.error("Unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response({"error": {"code": "server_error", "message": "Internal server error.", "details": {}}},
                        status=500)

    details: dict[str, Any] = {}
    if isinstance(exc, drf.ValidationError):
        code, message = "invalid", "The request is not valid; see details."
        details = {"fields": exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}}
    else:
        code = exc.default_code if isinstance(exc.default_code, str) else "error"
        message = str(exc.detail)
        if isinstance(exc, drf.Throttled) and exc.wait is not None:
            details = {"retry_after": int(exc.wait)}
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if isinstance(exc, drf.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(int(exc.wait) or 1)
    response = Response({"error": {"code": code, "message": message, "details": details}},
                        status=exc.status_code, headers=headers)
    # DRF's own 401 handling sets WWW-Authenticate from the authenticator.
    if context.get("request") is not None and exc.status_code == 401 and "WWW-Authenticate" not in headers:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@csrf_exempt
def api_not_found(request, path: str = ""):
    """Unknown /api/ paths answer the JSON error shape, not Django's HTML page."""
    return JsonResponse(NotFound(f"No API endpoint at {request.path}.", details={"path": request.path}).as_dict(),
                        status=404)


# Django's own error views (sessionctx/urls.py): what Django refuses before any API view runs (a Host outside
# ALLOWED_HOSTS, a failure in a middleware) still answers the JSON error shape under /api/.


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "details": {}}}, status=status)


def bad_request(request, exception):
    if _is_api(request):
        return _error(400, "bad_request", "The request could not be understood.")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _is_api(request):
        return _error(403, "permission_denied", "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _is_api(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return _error(500, "server_error", "Internal server error.")
    return defaults.server_error(request)
