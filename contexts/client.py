"""A small Python client for the sessionctx agent API (/api/v1/...).

One file that needs only httpx: agents can import it or copy it. Answers are plain dicts with the
API's field names; every error answer raises a SessionCtxError subclass built from the API's error
shape {"error": {"code", "message", "details"}}. Network failures raise httpx's own exceptions.

    with SessionCtxClient("http://127.0.0.1:8000", "sck_...") as ctx:
        context = ctx.get_context("chat-42")
        ctx.update_context("chat-42", expected_version=context["version"], progress=["Dump the schema"])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

try:
    # openai (a dependency here) ships httpx under this name, with httpx's API.
    import httpx2 as httpx
except ImportError:  # a copy of this file used where plain httpx is installed
    import httpx

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "NotFoundError",
    "RateLimitedError",
    "SessionCtxClient",
    "SessionCtxError",
    "VersionConflictError",
]


class SessionCtxError(Exception):
    """An error answer from the API: HTTP status, stable code, a sentence, structured details."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> SessionCtxError:
        try:
            error = response.json()["error"]
            code, message, details = str(error["code"]), str(error["message"]), dict(error.get("details") or {})
        except (ValueError, KeyError, TypeError):
            # Not the API's shape (a proxy's error page, say): keep what there is.
            code, message, details = "http_error", response.text[:500] or response.reason_phrase, {}
        # SessionCtxError itself for the rest (400, 413, 428, 5xx, ...).
        error_class = _ERRORS.get(response.status_code, SessionCtxError)
        return error_class(response.status_code, code, message, details, headers=response.headers)


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


class RateLimitedError(SessionCtxError):
    """429: too many requests for this key; wait `retry_after` seconds."""

    def __init__(self, *args: Any, headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, headers=headers, **kwargs)
        value = (headers or {}).get("Retry-After") or self.details.get("retry_after")
        try:
            self.retry_after: float | None = float(value) if value is not None else None
        except (TypeError, ValueError):
            self.retry_after = None


_ERRORS: dict[int, type[SessionCtxError]] = {
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    412: VersionConflictError,
    429: RateLimitedError,
}


class SessionCtxClient:
    """The agent API over one HTTP connection pool. Use it as a context manager, or call close()."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0) -> None:
        # The server's root; a base that already ends in /api/v1 (as in the curl examples) works too.
        root = base_url.rstrip("/").removesuffix("/api/v1")
        self._http = httpx.Client(
            base_url=f"{root}/api/v1",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
        )

    def __enter__(self) -> SessionCtxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- sessions and the snapshot ------------------------------------------------------------

    def create_session(self, session_id: str, *, mode: str | None = None, user_id: str | None = None,
                       agent_id: str | None = None, team_id: str | None = None) -> dict[str, Any]:
        """Create the session, or get the existing one (idempotent); answers its context."""
        body = _without_none(mode=mode, user_id=user_id, agent_id=agent_id, team_id=team_id)
        return self._call("PUT", _session(session_id), json=body)

    def get_context(self, session_id: str) -> dict[str, Any]:
        """The snapshot: summary, goal, plan, progress, handoff_note, mode, status, assignee, version, ..."""
        return self._call("GET", f"{_session(session_id)}/context")

    def get_prompt(self, session_id: str) -> str:
        """The <session_context> block for a system prompt; "" when there is nothing to say."""
        return self._call("GET", f"{_session(session_id)}/context/prompt")["prompt"]

    def update_context(self, session_id: str, *, expected_version: int, **fields: Any) -> dict[str, Any]:
        """Change the given fields (summary, goal, plan, progress, handoff_note, mode, reason) if still at
        expected_version; VersionConflictError (412) otherwise, with nothing written."""
        return self._call("PATCH", f"{_session(session_id)}/context", json=fields,
                          headers={"If-Match": f'"{expected_version}"'})

    def replace_context(self, session_id: str, *, expected_version: int, **fields: Any) -> dict[str, Any]:
        """Replace the whole snapshot (fields not given become empty) if still at expected_version."""
        return self._call("PUT", f"{_session(session_id)}/context", json=fields,
                          headers={"If-Match": f'"{expected_version}"'})

    def reset_context(self, session_id: str, reason: str, *, expected_version: int | None = None) -> dict[str, Any]:
        """Empty the snapshot (the history keeps every version)."""
        headers = {"If-Match": f'"{expected_version}"'} if expected_version is not None else None
        return self._call("POST", f"{_session(session_id)}/context/reset", json={"reason": reason}, headers=headers)

    def list_revisions(self, session_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` revisions (up to 200), newest first."""
        page = self._call("GET", f"{_session(session_id)}/revisions", params={"limit": limit})
        return page["results"]

    # --- messages and handoff ------------------------------------------------------------------

    def post_messages(self, session_id: str, messages: list[dict[str, Any]], *, user_id: str | None = None,
                      mode: str | None = None, agent_id: str | None = None) -> dict[str, Any]:
        """Append a batch ({"role", "content", "idempotency_key"?} each), creating the session if needed.

        Answers {"session_id", "created", "stored", "duplicates", "update"}.
        """
        body = {"messages": messages, **_without_none(user_id=user_id, mode=mode, agent_id=agent_id)}
        return self._call("POST", f"{_session(session_id)}/messages", json=body)

    def request_handoff(self, session_id: str, reason: str) -> dict[str, Any]:
        """Ask for a human; answers the context (status `handoff_requested`). ConflictError if one owns it."""
        return self._call("POST", f"{_session(session_id)}/handoff", json={"reason": reason})

    def delete_session(self, session_id: str) -> None:
        """Erase the session with its messages, revisions and runs."""
        self._call("DELETE", _session(session_id))

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise SessionCtxError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def _session(session_id: str) -> str:
    # Quoted so an id with a slash or space reaches the API (and is refused there) instead of another path.
    return f"sessions/{quote(session_id, safe=':@')}"


def _without_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}
