"""The embedded default's workers: with no broker, work that a Celery worker would do runs in a small pool of
threads of this process, so the request that asked for it answers at once.

One pool per process, SESSIONCTX_INPROCESS_WORKERS threads (0: run it in the caller, as the tests do). What keeps
two runs of one session apart is the same as with real workers (the claim's row lock and lease), not the pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

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


def _run(fn: Callable[..., Any], args: tuple) -> None:
    try:
        fn(*args)
    except Exception:
        logger.exception("in-process task %s failed", getattr(fn, "__name__", fn))
    finally:
        # The thread's own connection: closed, or it would outlive the task.
        connection.close()


def run_in_background(fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn(*args)` in this process's pool (or here and now when the pool has no threads)."""
    size = int(settings.SESSIONCTX_INPROCESS_WORKERS)
    if size <= 0:
        fn(*args)
        return
    _executor(size).submit(_run, fn, args)
