"""The embedded default's in-process pool: work with a countdown waits without holding a pool thread or the
caller, then runs in the pool, earliest first; with no pool threads, work the caller must not wait for still runs
elsewhere."""

from __future__ import annotations

import threading
import time

from contexts.infra.inprocess import discard_delayed, run_every, run_in_background


def _recorder():
    done: list[tuple[str, float, str]] = []
    finished = threading.Event()

    def record(name: str, expected: int) -> None:
        done.append((name, time.monotonic(), threading.current_thread().name))
        if len(done) == expected:
            finished.set()

    return done, finished, record


def test_a_countdown_runs_the_work_later_in_the_pool_earliest_first_and_the_caller_does_not_wait(settings):
    settings.SESSIONCTX_INPROCESS_WORKERS = 2
    done, finished, record = _recorder()
    started = time.monotonic()

    run_in_background(record, "late", 3, countdown=0.6)
    run_in_background(record, "soon", 3, countdown=0.2)  # added after, due before: wakes the waiting timer
    run_in_background(record, "now", 3)
    returned = time.monotonic() - started

    assert finished.wait(5), done
    assert returned < 0.1
    assert [name for name, _at, _thread in done] == ["now", "soon", "late"]
    at = {name: moment - started for name, moment, _thread in done}
    assert 0.2 <= at["soon"] < 0.5 and 0.6 <= at["late"] < 0.9, at
    assert all(thread.startswith("sessionctx-inprocess") for _name, _at, thread in done)


def test_with_no_pool_threads_work_runs_in_the_caller_unless_the_caller_must_not_wait(settings):
    settings.SESSIONCTX_INPROCESS_WORKERS = 0
    caller = threading.current_thread().name
    done, finished, record = _recorder()

    def slow(name: str) -> None:
        time.sleep(1)
        record(name, 3)

    run_in_background(record, "here", 3)
    assert [(name, thread) for name, _at, thread in done] == [("here", caller)]  # done before it returned

    started = time.monotonic()
    run_in_background(slow, "elsewhere", may_run_here=False)
    run_in_background(record, "delayed", 3, countdown=0.1)
    returned = time.monotonic() - started

    assert returned < 0.1, f"the caller waited {returned:.2f} s"
    assert finished.wait(5), done
    assert {name: thread != caller for name, _at, thread in done} == {"here": False, "elsewhere": True,
                                                                     "delayed": True}


def test_delayed_work_can_be_dropped_and_what_is_added_after_still_runs(settings):
    settings.SESSIONCTX_INPROCESS_WORKERS = 1
    done, finished, record = _recorder()

    run_in_background(record, "dropped", 1, countdown=0.2)
    run_in_background(record, "dropped too", 1, countdown=0.3)
    assert discard_delayed() == 2
    run_in_background(record, "kept", 1, countdown=0.1)

    assert finished.wait(5), done
    time.sleep(0.4)  # past the dropped countdowns
    assert [name for name, _at, _thread in done] == ["kept"]


def test_periodic_work_runs_at_its_interval_until_delayed_work_is_dropped(settings):
    settings.SESSIONCTX_INPROCESS_WORKERS = 1
    done, finished, record = _recorder()

    run_every(0.1, record, "tick", 3)
    assert finished.wait(5), done
    assert discard_delayed() == 1  # the next round
    count = len(done)
    time.sleep(0.4)
    assert len(done) == count == 3 and all(name == "tick" for name, _at, _thread in done)
