"""Request ids: one id per API request or page, on every log line it causes, here and in the workers.

The id comes from the caller's `X-Request-ID` when it is a short, safe token (so a proxy's or an agent's id can be
followed end to end), else a new one; the response returns it. Tasks published while it is set carry it in a
message header, and the worker sets it again around the task, so the worker's lines carry it too.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.core.signals import request_finished

HEADER = "X-Request-ID"
TASK_HEADER = "request_id"
# Printable, no spaces or quotes: the id lands in log lines, JSON and a response header unescaped.
_VALID = re.compile(r"[A-Za-z0-9._:@+=-]{1,64}")

_current: ContextVar[str] = ContextVar("request_id", default="")


def current_request_id() -> str:
    """The id of the request (or task) being handled here; "" outside one."""
    return _current.get()


@contextmanager
def request_id_set(request_id: str) -> Iterator[None]:
    """Within the block, this thread's lines carry `request_id` (work a request handed to another thread)."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


def valid_request_id(value: str | None) -> str | None:
    return value if value and _VALID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in MIDDLEWARE, so every other middleware's lines carry the id as well."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = valid_request_id(request.headers.get(HEADER)) or new_request_id()
        request.request_id = request_id
        # Cleared when the response is closed (request_finished), not here: Django logs a 4xx or 5xx answer
        # ("django.request") after the middleware has returned, and that line belongs to the request too.
        _current.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


@request_finished.connect
def _request_finished(**kwargs) -> None:
    _current.set("")


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on every record ("-" outside a request or task), for the formatters to print."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True


@before_task_publish.connect
def _add_header(headers=None, **kwargs) -> None:
    request_id = _current.get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def _task_request_id(task) -> str | None:
    request = task.request
    # Custom message headers become attributes of the task's request (protocol 2).
    return valid_request_id(getattr(request, TASK_HEADER, None)
                            or (getattr(request, "headers", None) or {}).get(TASK_HEADER))


@task_prerun.connect
def _enter_task(task=None, **kwargs) -> None:
    if task is None or task.request.is_eager:
        return  # in-process (eager): the caller's id is already set
    # A task published outside any request (beat, the sweep) gets an id of its own, to tie its lines together.
    _current.set(_task_request_id(task) or new_request_id())


@task_postrun.connect
def _leave_task(task=None, **kwargs) -> None:
    if task is not None and not task.request.is_eager:
        # The pool's threads or processes run task after task: no id may leak into the next one.
        _current.set("")
