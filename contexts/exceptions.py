"""One application error type, turned into one JSON shape by the API and into a message by pages."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A refusal a client can act on: a stable code, a sentence, details, an HTTP status."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(ApplicationError):
    code = "invalid"
    status = 400


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class VersionConflict(ApplicationError):
    """The snapshot changed since the caller read it: nothing was written."""

    code = "version_conflict"
    status = 412

    def __init__(self, *, expected: int, current: int) -> None:
        super().__init__(
            f"The context is at version {current}, not {expected}: re-read it and apply your change again.",
            details={"expected_version": expected, "current_version": current},
        )
        self.current = current


class PayloadTooLarge(ApplicationError):
    """The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE: nothing was read or stored."""

    code = "payload_too_large"
    status = 413


class StateConflict(ApplicationError):
    """The action does not fit the session's state (a handoff someone else took, say)."""

    code = "conflict"
    status = 409


def api_exception_handler(exc, context):
    """DRF exception handler: every error answers {"error": {"code", "message", "details"}}."""
    from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
    from django.core.exceptions import RequestDataTooBig
    from django.db import InterfaceError, OperationalError
    from django.http import Http404
    from rest_framework import exceptions as drf
    from rest_framework.response import Response

    if isinstance(exc, RequestDataTooBig):
        from django.conf import settings

        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = PayloadTooLarge(f"The request body is larger than {limit} bytes.", details={"max_bytes": limit})
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, Http404):
        exc = drf.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, OperationalError | InterfaceError):
        return None  # re-raised: contexts.middleware.DatabaseUnavailableMiddleware answers 503
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
