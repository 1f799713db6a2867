"""Typed errors built from the API's one error shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from ._http import httpx

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "SessionCtxError",
    "VersionConflictError",
]


class SessionCtxError(Exception):
    """An error answer from the API: HTTP status, stable code, a sentence, structured details."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @classmethod
    def from_response(cls, response: httpx.Response) -> SessionCtxError:
        try:
            error = response.json()["error"]
            code, message, details = str(error["code"]), str(error["message"]), dict(error.get("details") or {})
        except (ValueError, KeyError, TypeError):
            # Not the API's shape (a proxy's error page, say): keep what there is.
            code, message, details = "http_error", response.text[:500] or response.reason_phrase, {}
        # SessionCtxError itself for the rest (413, 415, 428, 500, ...).
        error_class = _ERRORS.get(response.status_code, SessionCtxError)
        return error_class(response.status_code, code, message, details, headers=response.headers)


class InvalidRequestError(SessionCtxError):
    """400: bad JSON, wrong types, unknown fields (`details["fields"]` says which), a refused session id; 422: an
    idempotency_key already used for a different message."""


class AuthenticationError(SessionCtxError):
    """401: no key, a wrong or revoked key; 403: the key lacks the scope (read or write)."""


class NotFoundError(SessionCtxError):
    """404: no such session, revision or run."""


class ConflictError(SessionCtxError):
    """409: the request does not fit the session's state (e.g. a person already owns the conversation)."""


class VersionConflictError(SessionCtxError):
    """412: the snapshot changed since you read it and nothing was written; re-read and apply again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.details.get("current_version")
        self.current_version: int | None = current if isinstance(current, int) else None


class _RetryAfterError(SessionCtxError):
    def __init__(self, *args: Any, headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, headers=headers, **kwargs)
        self.retry_after: float | None = retry_after_seconds(headers)


class RateLimitedError(_RetryAfterError):
    """429 (once the client's retries are spent): too many requests for this key; wait `retry_after` seconds."""


class ServiceUnavailableError(_RetryAfterError):
    """503, or 502/504 from a proxy in front (once the client's retries are spent): the service or a dependency of
    it does not answer."""


_ERRORS: dict[int, type[SessionCtxError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    412: VersionConflictError,
    422: InvalidRequestError,
    429: RateLimitedError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110, 10.2.3); None when absent or unreadable."""
    value = (headers or {}).get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
