"""What the sync and async clients share: each operation as a request description, the answer cache, the retry
policy. The clients only send the requests (httpx.Client or httpx.AsyncClient) and wait between retries."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

from ._http import httpx
from .errors import AuthenticationError, SessionCtxError, retry_after_seconds
from .types import NewMessage

T = TypeVar("T")

# Statuses that mean "not done, ask again later": the throttle (429), a dependency that does not answer (503), and
# a proxy in front (nginx) whose upstream is down or restarting (502) or too slow (504).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Answers after which the request may have been done all the same (a proxy lost the service's answer, or the service
# lost its database mid-write); a 429 says it was not.
LOST_ANSWER_STATUSES = frozenset({502, 503, 504})
# Call.forgets for a call that may erase any session (a user's erasure): every cached answer goes.
EVERY_SESSION = "\x00every session"
# The snapshot fields a PUT empties when not given.
EMPTY_CONTENT: dict[str, Any] = {"summary": "", "goal": "", "plan": [], "progress": [], "handoff_note": ""}
# Between polls of the event feed without a server-side wait, so a follow loop never spins.
IDLE_POLL_SECONDS = 1.0


def pause_before_next_poll(*, empty: bool, wait: float, took: float) -> float:
    """Seconds a follow loop waits before its next poll: none after news or a page that waited, IDLE_POLL_SECONDS
    after an empty page that came back well before the asked-for `wait` (no wait asked, or a server configured to
    wait less: SESSIONCTX_EVENTS_MAX_WAIT), so the loop never spins."""
    return IDLE_POLL_SECONDS if empty and (not wait or took < wait / 2) else 0.0


def _json(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation: the request, how to read its answer, and what the answer cache does with it."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    parse: Callable[[httpx.Response], T] = _json
    # Reads the client answers from its cache on a 304: (session_id, kind).
    cached: tuple[str, str] | None = None
    # A write whose answer is the session's context: it replaces the cached context.
    writes_context: str | None = None
    # The session this call erases: its cached answers go.
    forgets: str | None = None
    # Seconds the server may hold the answer (long-poll), added to the read timeout.
    holds: float = 0.0
    # A conditional write: whether the context read after a 412 on a retry is this write's own result (its first
    # try landed and only its answer was lost to a 502, 503 or 504).
    landed: Callable[[Any], bool] | None = None
    # What `landed` is asked of (None: the session's context), and when that is not the call's own answer, the read
    # that gives the answer once the write is known to have landed.
    landed_read: Call[Any] | None = None
    landed_answer: Call[Any] | None = None
    # A DELETE answered 404 after a try whose answer was lost (502, 503, 504): that try did the deleting (one of
    # what never was is a 404 on its first try).
    gone_is_done: bool = False


@dataclass(frozen=True)
class Retry:
    delay: float


@dataclass(frozen=True)
class Check:
    """A retried conditional write answered 412: read the context (`read`) to tell whether the first try landed."""

    read: Call[Any]
    landed: Callable[[Any], bool]
    conflict: SessionCtxError
    # Read once the write is known to have landed, for the call's answer (None: what `read` answered).
    answer: Call[Any] | None = None

    def result(self, current: Any) -> Any:
        """What `read` answered if the write landed (the caller then reads `answer`, when there is one); the 412
        otherwise."""
        if self.landed(current):
            return current
        raise self.conflict


class Base:
    """Configuration, the answer cache and the retry decision, for both clients."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float | httpx.Timeout = 10.0,
                 max_retries: int = 3, max_retry_wait: float = 30.0, cache_size: int = 1024) -> None:
        # The server's root; a base that already ends in /api/v1 (as in the curl examples) works too.
        root = base_url.rstrip("/").removesuffix("/api/v1")
        self.base_url = f"{root}/api/v1"
        self.headers = {"Accept": "application/json", "User-Agent": f"sessionctx-client/{_version()}"}
        if api_key:  # health needs none
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._cache_size = cache_size
        # (session_id, kind) -> (ETag, answer); least recently used first. A lock: a sync client may be shared
        # by threads.
        self._cache: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # --- requests ------------------------------------------------------------------------------

    def request_args(self, call: Call[Any]) -> dict[str, Any]:
        headers = dict(call.headers)
        if call.cached is not None:
            with self._cache_lock:
                entry = self._cache.get(call.cached)
            if entry is not None:
                headers["If-None-Match"] = entry[0]
        if call.writes_context is not None and "If-Match" in headers:
            with self._cache_lock:
                entry = self._cache.get((call.writes_context, "context"))
            if entry is not None and headers["If-Match"] == if_match(entry[1].get("version"))["If-Match"]:
                # The ETag read at that version names the session too: a session erased and created again under
                # this id since is at the same versions, and this write was meant for the one read.
                headers["If-Match"] = entry[0]
        timeout = self.timeout
        if call.holds:
            read = None if timeout.read is None else timeout.read + call.holds
            timeout = httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)
        return {"method": call.method, "url": call.path, "params": call.params, "json": call.json,
                "headers": headers, "timeout": timeout}

    def outcome(self, call: Call[T], response: httpx.Response, attempt: int, *, answer_lost: bool = False
                ) -> T | Retry | Check:
        """The answer, a Retry to wait for, a Check to make, or the error raised. `answer_lost`: an earlier try
        was answered 502, 503 or 504, so it may have been done (a 429's was not)."""
        if response.status_code == 304 and call.cached is not None:
            with self._cache_lock:
                entry = self._cache.get(call.cached)
                if entry is not None:
                    self._cache.move_to_end(call.cached)
            if entry is not None:
                # A copy: a caller changing its answer must not change the next one.
                return copy.deepcopy(entry[1])
            # Evicted by another thread since the request went out: ask again, without If-None-Match.
            return Retry(0.0)
        if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
            delay = retry_after_seconds(response.headers)
            if delay is None:
                delay = min(0.5 * 2**attempt, self.max_retry_wait)
            # A longer wait than the caller allows is theirs to decide on: the error says how long.
            if delay <= self.max_retry_wait:
                return Retry(delay)
        if response.status_code == 412 and attempt > 0 and call.landed is not None and call.writes_context:
            # The version moved: perhaps by this very write, whose earlier try's answer was lost.
            return Check(call.landed_read or get_context(call.writes_context), call.landed,
                         SessionCtxError.from_response(response), call.landed_answer)
        if response.status_code == 404 and answer_lost and call.gone_is_done:
            self._forget(call)
            return None  # type: ignore[return-value] - a DELETE answers nothing
        if response.status_code >= 400:
            raise SessionCtxError.from_response(response)
        if response.status_code >= 300:
            # No redirect is followed (a write is not sent on to another address unseen), and none is an answer:
            # most often an http:// base URL that the service sends to https://.
            location = response.headers.get("Location", "")
            raise SessionCtxError(response.status_code, "redirect",
                                  f"The service answered with a redirect to {location or 'another address'}; "
                                  "nothing was done there. Use that address as the client's base URL.",
                                  {"location": location}, headers=response.headers)
        result = call.parse(response)
        etag = response.headers.get("ETag")
        if call.cached is not None and etag:
            self._remember(call.cached, etag, result)
        if call.writes_context is not None and etag and isinstance(result, dict) and "summary" in result:
            # A write answers the context as it now is (to a key that may read it): the next read costs a 304.
            self._remember((call.writes_context, "context"), etag, result)
        self._forget(call)
        return result

    def _forget(self, call: Call[Any]) -> None:
        if call.forgets is not None:
            with self._cache_lock:
                for key in [key for key in self._cache if call.forgets in (key[0], EVERY_SESSION)]:
                    del self._cache[key]

    def _remember(self, key: tuple[str, str], etag: str, value: Any) -> None:
        if self._cache_size <= 0:
            return
        with self._cache_lock:
            self._cache[key] = (etag, copy.deepcopy(value))
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _version() -> str:
    from . import __version__

    return __version__


# --- the operations: one function each, shared by both clients --------------------------------------


def path_segment(value: str) -> str:
    """A session or user id as one path segment: quoted, so an id with a slash or space, or of dots alone (which an
    HTTP client resolves as "this" or "the parent" segment), reaches the API (and is refused there) instead of
    another path."""
    if value and value.strip(".") == "":
        return "%2E" * len(value)
    return quote(value, safe=":@")


def session_path(session_id: str) -> str:
    return f"sessions/{path_segment(session_id)}"


def without_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def context_fields(**fields: Any) -> dict[str, Any]:
    """The snapshot fields given (None: not given), lists as JSON arrays."""
    return {name: list(value) if name in ("plan", "progress") else value
            for name, value in fields.items() if value is not None}


def if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}


def cursor_value(cursor: str | None) -> str | None:
    """A page's `next`/`previous` link, or the bare cursor taken from one."""
    if cursor is None or "://" not in cursor:
        return cursor
    values = parse_qs(urlsplit(cursor).query).get("cursor")
    return values[0] if values else None


def page_params(limit: int | None, cursor: str | None, **filters: Any) -> dict[str, Any]:
    """The query of a list call. A `next`/`previous` link given as `cursor` brings its own filters and limit (the
    cursor is only valid with them); arguments given here win over the link's."""
    linked: dict[str, Any] = {}
    if cursor is not None and "://" in cursor:
        linked = {name: values[-1] for name, values in parse_qs(urlsplit(cursor).query).items() if name != "cursor"}
    return {**linked, **without_none(limit=limit, cursor=cursor_value(cursor), **filters)}


def health() -> Call[Any]:
    return Call("GET", "health")


def list_sessions(*, user_id: str | None, agent_id: str | None, status: str | None, mode: str | None,
                  updated_after: str | None, limit: int | None, cursor: str | None) -> Call[Any]:
    return Call("GET", "sessions", params=page_params(limit, cursor, user_id=user_id, agent_id=agent_id,
                                                      status=status, mode=mode, updated_after=updated_after))


def create_session(session_id: str, **owners: str | None) -> Call[Any]:
    return Call("PUT", session_path(session_id), json=without_none(**owners), writes_context=session_id)


def delete_session(session_id: str) -> Call[None]:
    return Call("DELETE", session_path(session_id), forgets=session_id, gone_is_done=True)


def get_context(session_id: str) -> Call[Any]:
    return Call("GET", f"{session_path(session_id)}/context", cached=(session_id, "context"))


def _prompt_text(response: httpx.Response) -> str:
    return response.json()["prompt"]


def get_prompt(session_id: str) -> Call[str]:
    return Call("GET", f"{session_path(session_id)}/context/prompt", parse=_prompt_text,
                cached=(session_id, "prompt"))


def as_stored(value: Any) -> Any:
    """A snapshot field as the service stores it: text and each step stripped, with one kind of line break (what
    the service's validation does), so a write that landed is recognised whatever whitespace it was sent with."""
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if isinstance(value, list):
        return [as_stored(step) for step in value]
    return value


def write_context(session_id: str, method: str, expected_version: int, fields: Mapping[str, Any]) -> Call[Any]:
    sent = {name: value for name, value in fields.items() if name != "reason"}
    # What the snapshot holds once the write landed: the fields sent (PUT: the others empty), one version on.
    wanted = sent if method == "PATCH" else {**EMPTY_CONTENT, **sent}

    def landed(current: Any) -> bool:
        return (isinstance(current, dict) and current.get("version") == expected_version + 1
                and all(current.get(name) == as_stored(value) for name, value in wanted.items()))

    return Call(method, f"{session_path(session_id)}/context", json=dict(fields),
                headers=if_match(expected_version), writes_context=session_id, landed=landed)


def reset_context(session_id: str, reason: str, expected_version: int | None) -> Call[Any]:
    headers = if_match(expected_version) if expected_version is not None else {}

    def landed(current: Any) -> bool:  # one version on, and empty
        return (isinstance(current, dict) and expected_version is not None
                and current.get("version") == expected_version + 1
                and all(current.get(name) == value for name, value in EMPTY_CONTENT.items()))

    return Call("POST", f"{session_path(session_id)}/context/reset", json={"reason": reason}, headers=headers,
                writes_context=session_id, landed=landed)


def request_update(session_id: str) -> Call[Any]:
    return Call("POST", f"{session_path(session_id)}/context/update")


def list_revisions(session_id: str, *, limit: int | None, cursor: str | None) -> Call[Any]:
    return Call("GET", f"{session_path(session_id)}/revisions", params=page_params(limit, cursor))


def revert_context(session_id: str, to_version: int, *, expected_version: int, reason: str) -> Call[Any]:
    # The content alone cannot tell this revert from another write: the newest revision can (the service records
    # a revert's reason as "Reverted to version N: <reason>").
    said = f"Reverted to version {int(to_version)}: {reason.strip()}"

    def landed(page: Any) -> bool:
        newest = (page.get("results") or [None])[0] if isinstance(page, dict) else None
        return (isinstance(newest, dict) and newest.get("version") == expected_version + 1
                and newest.get("reason") == said)

    return Call("POST", f"{session_path(session_id)}/revisions/{int(to_version)}/revert", json={"reason": reason},
                headers=if_match(expected_version), writes_context=session_id, landed=landed,
                landed_read=list_revisions(session_id, limit=1, cursor=None), landed_answer=get_context(session_id))


def post_messages(session_id: str, messages: Sequence[NewMessage | Mapping[str, Any]], **extra: str | None
                  ) -> Call[Any]:
    # A message without an idempotency key gets one here, once: a retry of this call (after a 503 whose batch had
    # in fact been stored, say) then stores nothing twice.
    batch = [dict(m) if m.get("idempotency_key") else {**m, "idempotency_key": f"auto-{uuid.uuid4().hex}"}
             for m in messages]
    return Call("POST", f"{session_path(session_id)}/messages", json={"messages": batch, **without_none(**extra)})


def list_messages(session_id: str, *, after_seq: int | None, limit: int | None, cursor: str | None) -> Call[Any]:
    return Call("GET", f"{session_path(session_id)}/messages", params=page_params(limit, cursor, after_seq=after_seq))


def request_handoff(session_id: str, reason: str) -> Call[Any]:
    return Call("POST", f"{session_path(session_id)}/handoff", json={"reason": reason}, writes_context=session_id)


def list_runs(session_id: str, *, limit: int | None, cursor: str | None) -> Call[Any]:
    return Call("GET", f"{session_path(session_id)}/runs", params=page_params(limit, cursor))


def get_run(run_id: str) -> Call[Any]:
    return Call("GET", f"runs/{path_segment(str(run_id))}")


def list_events(*, after: int, session_id: str | None, types: Sequence[str] | str | None, limit: int | None,
                wait: float | None) -> Call[Any]:
    if types is not None and not isinstance(types, str):
        types = ",".join(types)
    return Call("GET", "events", params=without_none(after=after, session_id=session_id, types=types, limit=limit,
                                                     wait=wait), holds=wait or 0.0)


def get_locks(session_id: str) -> Call[Any]:
    return Call("GET", f"{session_path(session_id)}/locks")


def set_locks(session_id: str, fields: Sequence[str], reason: str, expected_locks: Sequence[str] | None) -> Call[Any]:
    body: dict[str, Any] = {"fields": list(fields), "reason": reason}
    if expected_locks is not None:
        body["expected_locks"] = list(expected_locks)
    return Call("PUT", f"{session_path(session_id)}/locks", json=body)


def get_usage(session_id: str) -> Call[Any]:
    return Call("GET", f"{session_path(session_id)}/usage")


def export_session(session_id: str) -> Call[Any]:
    return Call("GET", f"{session_path(session_id)}/export")


def _json_lines(response: httpx.Response) -> list[Any]:
    """The documents; an export the service stopped (the key revoked or expired meanwhile: its 200 was long sent)
    ends in a line in the error shape, raised here, or a cut-short export would pass for a whole one."""
    documents = []
    for line in response.text.splitlines():
        if not line.strip():
            continue
        document = json.loads(line)
        if isinstance(document, dict) and set(document) == {"error"} and isinstance(document["error"], dict):
            error = document["error"]
            code = str(error.get("code", "export_stopped"))
            details = {**(error.get("details") or {}), "documents_received": len(documents)}
            error_class = AuthenticationError if code in ("authentication_failed", "not_authenticated") \
                else SessionCtxError
            raise error_class(401 if error_class is AuthenticationError else response.status_code, code,
                              str(error.get("message", "The export stopped.")), details)
        documents.append(document)
    return documents


def export_user(user_id: str) -> Call[list[Any]]:
    return Call("GET", f"users/{path_segment(user_id)}/export", parse=_json_lines,
                headers={"Accept": "application/x-ndjson"})


def erase_user(user_id: str) -> Call[Any]:
    # Which cached sessions were the user's is not known here: none of them may outlive the erasure.
    return Call("DELETE", f"users/{path_segment(user_id)}", forgets=EVERY_SESSION)
