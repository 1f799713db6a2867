"""/api/v1/events: the feed an agent follows to learn that a person took, answered or handed back a
conversation, and that a context changed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from .. import selectors
from ..infra.database import pause_between_queries
from .auth import still_authenticated
from .http import ApiView, validated
from .openapi import errors
from .serializers import EventFilterSerializer, EventListOutputSerializer

# How often a long-poll looks for new events: any process may write them, so it asks the database.
POLL_INTERVAL = 0.25
_waiting_lock = threading.Lock()
_waiting = 0


@contextmanager
def wait_slot() -> Iterator[bool]:
    """Whether this request may hold its thread for a long-poll: at most SESSIONCTX_EVENTS_WAITING_PER_PROCESS at once
    in a process, so that its other threads stay free for the API and the health checks. One over that answers at
    once with what there is (the client polls again a moment later)."""
    global _waiting
    with _waiting_lock:
        granted = _waiting < settings.SESSIONCTX_EVENTS_WAITING_PER_PROCESS
        _waiting += granted
    try:
        yield granted
    finally:
        if granted:
            with _waiting_lock:
                _waiting -= 1


class EventListApi(ApiView):
    @extend_schema(tags=["events"], operation_id="events_list", parameters=[EventFilterSerializer],
                   responses={200: EventListOutputSerializer, **errors(400)},
                   description="Events after the id you last saw, oldest first: `context.updated`, "
                               "`handoff.requested`, `handoff.taken`, `handoff.taken_over`, `handoff.released`, "
                               "`handoff.closed`, `message.staff_reply`. Ids grow in commit order, so paging "
                               "with `after=next_after` never skips one. With `wait`, an empty answer is held "
                               "until an event arrives or the wait ends.")
    def get(self, request):
        query = validated(EventFilterSerializer, request.query_params)
        wanted = {"project": request.auth.project_id, "after": query["after"], "session_id": query.get("session_id"),
                  "types": query.get("types", ()), "limit": query["limit"] + 1}
        deadline = time.monotonic() + query["wait"]
        events = selectors.events_after(**wanted)
        waited = False
        if not events and query["wait"] > 0:
            with wait_slot() as may_wait:
                while may_wait and not events and time.monotonic() < deadline:
                    pause_between_queries(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
                    waited = True
                    events = selectors.events_after(**wanted)
        if waited:
            # The key was checked when the wait began; a key revoked or expired meanwhile gets nothing of it.
            still_authenticated(request)
        has_more = len(events) > query["limit"]
        events = events[: query["limit"]]
        next_after = events[-1].id if events else query["after"]
        return Response(EventListOutputSerializer({"events": events, "next_after": next_after,
                                                   "has_more": has_more}).data)
