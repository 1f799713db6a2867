"""The embedded default's workers: with no broker, work that a Celery worker would do runs in a small pool of
threads of this process, so the request that asked for it answers at once.

One pool per process, SESSIONCTX_INPROCESS_WORKERS threads (0: work that is due now runs in the caller, as the tests
do, unless the caller must never wait for it). Work with a countdown waits in one timer thread per process, then
goes to the pool. What keeps two runs of one session apart is the same as with real workers (the claim's row lock
and lease), not the pool.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

from .requestid import current_request_id, new_request_id, request_id_set

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _executor(size: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(size)
        if pool is None:
            # A changed size (tests) gets a pool of its own; the old one finishes what it holds.
            _pools.clear()
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="sessionctx-inprocess")
        return pool


def _run(fn: Callable[..., Any], args: tuple, request_id: str) -> None:
    try:
        # The lines of work a request caused carry its id, as a Celery worker's do; other work (a periodic sweep)
        # gets one of its own, as a task from beat does.
        with request_id_set(request_id or new_request_id()):
            fn(*args)
    except Exception:
        logger.exception("in-process task %s%r failed", getattr(fn, "__name__", fn), args)
    finally:
        # The thread's own connection: closed, or it would outlive the task.
        connection.close()


def _submit(fn: Callable[..., Any], args: tuple, request_id: str) -> None:
    # Never fewer than one thread here: what reaches the pool is work the caller must not wait for.
    size = max(int(settings.SESSIONCTX_INPROCESS_WORKERS), 1)
    try:
        _executor(size).submit(_run, fn, args, request_id)
    except RuntimeError as exc:  # the interpreter is shutting down: the pool takes nothing new
        logger.warning("in-process task %s%r dropped: %s", getattr(fn, "__name__", fn), args, exc)


class _Timer:
    """One thread that hands each delayed task to the pool when its time comes (a heap, earliest first)."""

    def __init__(self) -> None:
        self.due: list[tuple[float, int, Callable[..., Any], tuple, str]] = []
        self.order = itertools.count()
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None

    def add(self, delay: float, fn: Callable[..., Any], args: tuple, request_id: str = "") -> None:
        with self.changed:
            heapq.heappush(self.due, (time.monotonic() + delay, next(self.order), fn, args, request_id))
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="sessionctx-inprocess-timer", daemon=True)
                self.thread.start()
            self.changed.notify()

    def _loop(self) -> None:
        while True:
            with self.changed:
                while not self.due or self.due[0][0] > time.monotonic():
                    self.changed.wait(self.due[0][0] - time.monotonic() if self.due else None)
                _at, _order, fn, args, request_id = heapq.heappop(self.due)
            try:
                _submit(fn, args, request_id)
            except Exception:  # the timer outlives one bad hand-over
                logger.exception("in-process task %s%r not started", getattr(fn, "__name__", fn), args)

    def discard(self) -> int:
        with self.changed:
            count = len(self.due)
            self.due.clear()
            self.changed.notify()
        return count


_timer = _Timer()


# Periodic work (run_every) of an earlier generation stops: discard_delayed starts a new one.
_generation = 0


def discard_delayed() -> int:
    """Drop the work with a countdown that this process still holds, and say how many; what is running or due in
    the pool goes on, and periodic work stops after its current round. For a test that ends: a webhook retry it
    left would otherwise fire in a later test (whose rows may have the same ids) or after the test database is
    gone."""
    global _generation
    _generation += 1
    return _timer.discard()


def run_every(interval: float, fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn(*args)` in this process's pool every `interval` seconds, the first time one interval from now,
    until discard_delayed(). A round that fails is logged; the next one still comes."""
    _timer.add(interval, _periodic, (interval, fn, args, _generation))


def _periodic(interval: float, fn: Callable[..., Any], args: tuple, generation: int) -> None:
    if generation != _generation:
        return
    try:
        fn(*args)
    finally:
        if generation == _generation:
            _timer.add(interval, _periodic, (interval, fn, args, generation))


def start_beat() -> list[str]:
    """The embedded default's celery beat: every task of CELERY_BEAT_SCHEDULE (the sweeps that resend lost runs,
    update quiet idle:S sessions and sessions whose back-off is over, resend due webhooks, and the purges) runs
    in this process's pool at its interval. The web process calls it when there is no broker (sessionctx/wsgi.py);
    with a broker, `celery beat` does this. Answers the tasks started."""
    from celery import current_app

    started = []
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        run_every(float(entry["schedule"]), current_app.tasks[entry["task"]])
        started.append(entry["task"])
    return started


def _after_fork_in_child() -> None:
    # A forked process has none of its parent's threads: it starts its own pool and timer when it needs them.
    global _lock, _timer
    _lock = threading.Lock()
    _pools.clear()
    _timer = _Timer()


os.register_at_fork(after_in_child=_after_fork_in_child)


def run_in_background(fn: Callable[..., Any], *args: Any, countdown: float = 0.0, may_run_here: bool = True) -> None:
    """Run `fn(*args)` in this process's pool, `countdown` seconds from now if given.

    With no pool threads (SESSIONCTX_INPROCESS_WORKERS=0), work that is due now runs here and now, before this
    returns, unless `may_run_here` is False (work the caller must never wait for, such as a POST to a webhook
    receiver): that, and all delayed work, goes to a pool of one thread."""
    if countdown > 0:
        _timer.add(countdown, fn, args, current_request_id())
    elif may_run_here and int(settings.SESSIONCTX_INPROCESS_WORKERS) <= 0:
        fn(*args)
    else:
        _submit(fn, args, current_request_id())
