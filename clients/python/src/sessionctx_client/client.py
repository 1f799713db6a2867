"""SessionCtxClient: the whole agent API, blocking (httpx.Client)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import _core as ops
from ._http import httpx
from .types import (
    Context,
    Event,
    EventPage,
    Health,
    MessagePage,
    MessagesPosted,
    Mode,
    NewMessage,
    RevisionPage,
    Run,
    RunPage,
    RunRef,
    SessionPage,
)


class SessionCtxClient(ops.Base):
    """The agent API over one connection pool. Use it as a context manager, or call close().

    Reads of a session's context and prompt send If-None-Match with the last answer's ETag, so a repeated read of
    an unchanged session costs a 304. 429 and 503 answers are retried up to `max_retries` times, waiting what
    Retry-After says (a longer wait than `max_retry_wait` raises at once). Every error answer raises a
    SessionCtxError subclass; network failures raise httpx's own exceptions.
    """

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float | httpx.Timeout = 10.0,
                 max_retries: int = 3, max_retry_wait: float = 30.0, cache_size: int = 1024,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries, max_retry_wait=max_retry_wait,
                         cache_size=cache_size)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout,
                                  transport=transport)

    def __enter__(self) -> SessionCtxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: ops.Call[Any]) -> Any:
        attempt, answer_lost = 0, False
        while True:
            response = self._http.request(**self.request_args(call))
            outcome = self.outcome(call, response, attempt, answer_lost=answer_lost)
            if isinstance(outcome, ops.Check):
                try:
                    current = self._run(outcome.read)
                except ops.SessionCtxError:  # e.g. a key that may not read: the 412 stands
                    raise outcome.conflict from None
                current = outcome.result(current)
                return self._run(outcome.answer) if outcome.answer is not None else current
            if not isinstance(outcome, ops.Retry):
                return outcome
            answer_lost = answer_lost or response.status_code in ops.LOST_ANSWER_STATUSES
            time.sleep(outcome.delay)
            attempt += 1

    # --- service and sessions ------------------------------------------------------------------

    def health(self) -> Health:
        """The service's health (no key needed); ServiceUnavailableError when a dependency does not answer."""
        return self._run(ops.health())

    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, status: str | None = None,
                      mode: Mode | None = None, updated_after: str | None = None, limit: int | None = None,
                      cursor: str | None = None) -> SessionPage:
        """Sessions, most recently changed first; pass a page's `next` as `cursor` for the next page."""
        return self._run(ops.list_sessions(user_id=user_id, agent_id=agent_id, status=status, mode=mode,
                                           updated_after=updated_after, limit=limit, cursor=cursor))

    def create_session(self, session_id: str, *, mode: Mode | None = None, user_id: str | None = None,
                       agent_id: str | None = None, team_id: str | None = None,
                       update_policy: str | None = None) -> Context:
        """Create the session, or get the existing one (idempotent); answers its context. `update_policy`
        (`every_turn`, `every_n_turns:N`, `tokens:T`, `idle:S`; "" for the server's default) is set on an
        existing session too, unlike the owners."""
        return self._run(ops.create_session(session_id, mode=mode, user_id=user_id, agent_id=agent_id,
                                            team_id=team_id, update_policy=update_policy))

    def delete_session(self, session_id: str) -> None:
        """Erase the session with its messages, revisions and runs."""
        self._run(ops.delete_session(session_id))

    # --- the snapshot --------------------------------------------------------------------------

    def get_context(self, session_id: str) -> Context:
        """The snapshot: summary, goal, plan, progress, handoff_note, mode, status, assignee, version, ..."""
        return self._run(ops.get_context(session_id))

    def get_prompt(self, session_id: str) -> str:
        """The <session_context> block for a system prompt; "" when there is nothing to say."""
        return self._run(ops.get_prompt(session_id))

    def update_context(self, session_id: str, *, expected_version: int, summary: str | None = None,
                       goal: str | None = None, plan: Sequence[str] | None = None,
                       progress: Sequence[str] | None = None, handoff_note: str | None = None,
                       mode: Mode | None = None, reason: str | None = None) -> Context:
        """Change the given fields if the snapshot is still at expected_version; VersionConflictError otherwise,
        with nothing written."""
        return self._run(ops.write_context(session_id, "PATCH", expected_version, ops.context_fields(
            summary=summary, goal=goal, plan=plan, progress=progress, handoff_note=handoff_note, mode=mode,
            reason=reason)))

    def replace_context(self, session_id: str, *, expected_version: int, summary: str | None = None,
                        goal: str | None = None, plan: Sequence[str] | None = None,
                        progress: Sequence[str] | None = None, handoff_note: str | None = None,
                        mode: Mode | None = None, reason: str | None = None) -> Context:
        """Replace the whole snapshot (fields not given become empty) if still at expected_version."""
        return self._run(ops.write_context(session_id, "PUT", expected_version, ops.context_fields(
            summary=summary, goal=goal, plan=plan, progress=progress, handoff_note=handoff_note, mode=mode,
            reason=reason)))

    def reset_context(self, session_id: str, reason: str, *, expected_version: int | None = None) -> Context:
        """Empty the snapshot (the history keeps every version); only if still at expected_version, when given."""
        return self._run(ops.reset_context(session_id, reason, expected_version))

    def request_update(self, session_id: str) -> RunRef:
        """Queue a model update of the snapshot from the messages it has not seen; answers the run."""
        return self._run(ops.request_update(session_id))

    # --- history -------------------------------------------------------------------------------

    def list_revisions(self, session_id: str, *, limit: int | None = None, cursor: str | None = None
                       ) -> RevisionPage:
        """Every version of the snapshot, newest first: who, why, when, what changed."""
        return self._run(ops.list_revisions(session_id, limit=limit, cursor=cursor))

    def revert_context(self, session_id: str, to_version: int, *, expected_version: int, reason: str) -> Context:
        """Restore the snapshot as it was at to_version (a new version), if it is still at expected_version."""
        return self._run(ops.revert_context(session_id, to_version, expected_version=expected_version,
                                            reason=reason))

    # --- locks, usage, data governance ---------------------------------------------------------

    def get_locks(self, session_id: str) -> dict[str, Any]:
        """The fields staff locked (model updates leave them alone) and the extraction's pending proposals."""
        return self._run(ops.get_locks(session_id))

    def set_locks(self, session_id: str, fields: Sequence[str], reason: str, *,
                  expected_locks: Sequence[str] | None = None) -> dict[str, Any]:
        """Lock exactly these fields ([] unlocks all), with a reason; a write that would change one answers 423.
        `expected_locks`: the locked fields as you read them; if someone changed the locks since, ConflictError."""
        return self._run(ops.set_locks(session_id, fields, reason, expected_locks))

    def get_usage(self, session_id: str) -> dict[str, Any]:
        """What the session's model updates used and cost: tokens and cost in all."""
        return self._run(ops.get_usage(session_id))

    def export_session(self, session_id: str) -> dict[str, Any]:
        """The session as one document: snapshot, every message, every revision, a summary of its runs."""
        return self._run(ops.export_session(session_id))

    def export_user(self, user_id: str) -> list[dict[str, Any]]:
        """Every session of an end user, one export document each (the API streams them as JSON Lines); an export
        the service stopped part way (the key revoked meanwhile) raises AuthenticationError, never a shorter list."""
        return self._run(ops.export_user(user_id))

    def erase_user(self, user_id: str) -> dict[str, Any]:
        """Erase every session of an end user with all it holds; answers what was deleted (zeros the second time)."""
        return self._run(ops.erase_user(user_id))

    # --- messages, handoff, runs, events -------------------------------------------------------

    def post_messages(self, session_id: str, messages: Sequence[NewMessage | Mapping[str, Any]], *,
                      user_id: str | None = None, mode: Mode | None = None, agent_id: str | None = None
                      ) -> MessagesPosted:
        """Append a batch, creating the session if needed; a message whose idempotency_key is stored is skipped."""
        return self._run(ops.post_messages(session_id, messages, user_id=user_id, mode=mode, agent_id=agent_id))

    def list_messages(self, session_id: str, *, after_seq: int | None = None, limit: int | None = None,
                      cursor: str | None = None) -> MessagePage:
        """The transcript in order (staff replies included, with their `author`)."""
        return self._run(ops.list_messages(session_id, after_seq=after_seq, limit=limit, cursor=cursor))

    def request_handoff(self, session_id: str, reason: str) -> Context:
        """Ask for a human (status `handoff_requested`); ConflictError if a person already owns it."""
        return self._run(ops.request_handoff(session_id, reason))

    def list_runs(self, session_id: str, *, limit: int | None = None, cursor: str | None = None) -> RunPage:
        """The session's model updates, newest first, with their cost and outcome."""
        return self._run(ops.list_runs(session_id, limit=limit, cursor=cursor))

    def get_run(self, run_id: str) -> Run:
        return self._run(ops.get_run(run_id))

    def list_events(self, *, after: int = 0, session_id: str | None = None,
                    types: Sequence[str] | str | None = None, limit: int | None = None, wait: float | None = None
                    ) -> EventPage:
        """One page of events after the id `after`; with `wait`, the server holds an empty answer up to that
        many seconds for one to arrive."""
        return self._run(ops.list_events(after=after, session_id=session_id, types=types, limit=limit, wait=wait))

    def events(self, *, after: int = 0, session_id: str | None = None, types: Sequence[str] | str | None = None,
               limit: int | None = None, wait: float = 25.0, follow: bool = True) -> Iterator[Event]:
        """Every event after `after`, following `next_after`; with follow, long-polls for new ones forever
        (resume later from the last event's `id`), else stops when none are left."""
        while True:
            started = time.monotonic()
            page = self.list_events(after=after, session_id=session_id, types=types, limit=limit,
                                    wait=wait if follow else None)
            yield from page["events"]
            after = page["next_after"]
            if page["has_more"]:
                continue
            if not follow:
                return
            pause = ops.pause_before_next_poll(empty=not page["events"], wait=wait,
                                               took=time.monotonic() - started)
            if pause:
                time.sleep(pause)
