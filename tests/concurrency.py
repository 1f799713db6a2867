"""For tests that interleave two connections (PostgreSQL row locks): another process's work at a chosen moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection


def started_on_its_own_connection(work: Callable[[], object]) -> threading.Thread:
    """A thread running `work` as another process would, on a connection of its own (closed at its end)."""

    def run():
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def in_another_connection(work: Callable[[], object]) -> None:
    """Runs `work` as another process would, on a connection of its own, to its end (10 s at most)."""
    started_on_its_own_connection(work).join(10)


@contextmanager
def once_before(matches: Callable[[str], bool], work: Callable[[], object]) -> Iterator[list[bool]]:
    """Within the block, `work` runs and commits in another connection just before this connection's first
    statement that `matches`; the list yielded holds True once it has."""
    ran: list[bool] = []

    def wrapper(execute, sql, params, many, context):
        if not ran and matches(sql):
            ran.append(True)
            in_another_connection(work)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield ran


def wait_until_blocked_on_a_lock(timeout: float = 5.0) -> None:
    """Until some other connection waits for a lock (the call under test, queued behind the holder)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("nothing ever waited for the lock")


def one_queued_behind_the_other(holder: Callable[[], object], waiter: Callable[[], object], *,
                                holding: threading.Event, release: threading.Event) -> None:
    """`holder` runs on a connection of its own until it sets `holding` (it holds a row lock) and then waits for
    `release`; `waiter` then runs on another and queues behind that lock; once it waits, `release` is set and both
    run to their end (10 s at most)."""

    first = started_on_its_own_connection(holder)
    assert holding.wait(5), "the first never took its lock"
    second = started_on_its_own_connection(waiter)
    try:
        wait_until_blocked_on_a_lock()
    finally:
        release.set()
        first.join(10)
        second.join(10)
