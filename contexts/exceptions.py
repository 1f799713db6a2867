"""One application error type, turned into one JSON shape by the API and into a message by pages."""

from __future__ import annotations

from typing import Any


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
