"""Real Celery workers on Redis and PostgreSQL: posted messages reach the snapshot, killed workers lose
nothing, two workers on one session neither skip nor repeat a message."""

from __future__ import annotations

import dataclasses
import os
import re
import time
import uuid

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client

from contexts.extraction.dispatch import send_pending
from contexts.models import ExtractionRun, Revision, SessionContext
from tests.extraction.conftest import attempt_lock_free, celery_broker
from tests.extraction.workers import Beat, Worker, database_url
from tests.factories import make_api_key
from tests.fake_openai import FakeOpenAI, Reply, echo_extraction

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def cluster(settings):
    """Fake model + a unique queue + a way to start workers; this process publishes to Redis."""
    if connection.vendor != "postgresql":
        pytest.skip("worker tests need PostgreSQL (set DATABASE_URL)")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    queue = f"sessionctx-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.SESSIONCTX_WEBHOOK_QUEUE = f"{queue}.webhooks"  # as the workers' settings make it of CELERY_QUEUE
    workers: list[Worker] = []
    with FakeOpenAI() as fake, celery_broker(REDIS_URL):
        env = {
            "DATABASE_URL": database_url(connection.settings_dict), "CELERY_BROKER_URL": REDIS_URL,
            "SESSIONCTX_MODEL": "fake-model", "OPENAI_API_KEY": "test", "OPENAI_BASE_URL": fake.url,
            "OPENAI_MAX_RETRIES": "0", "OPENAI_TIMEOUT": "4", "SESSIONCTX_RETRY_BACKOFF": "0.01",
            # Short limits so a killed worker's task comes back within seconds.
            "CELERY_TASK_SOFT_TIME_LIMIT": "6", "CELERY_TASK_TIME_LIMIT": "7", "CELERY_VISIBILITY_TIMEOUT": "8",
            "CELERY_UNACKED_RESTORE_INTERVAL": "1", "CELERY_UNACKED_RESTORE_THROTTLE": "1",
        }

        def start(name: str, *, beat: bool = False, only: str | None = None, pool: str = "prefork",
                  **overrides: str) -> Worker:
            if beat:
                worker = Beat(name, queue=queue, env={**env, **overrides})
            else:
                worker = Worker(name, queue=queue, env={**env, **overrides}, only=only, pool=pool, concurrency=(
                    8 if pool == "threads" else 1))
            workers.append(worker)
            worker.wait_ready()
            return worker

        yield fake, start
        for worker in workers:
            print(f"--- worker {worker.name} log (tail) ---\n{worker.output()[-3000:]}")  # shown for failures
            worker.stop()
    redis.Redis.from_url(REDIS_URL).delete(queue, settings.SESSIONCTX_WEBHOOK_QUEUE)


@pytest.fixture
def api():
    _, raw = make_api_key("read", "write")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def post(session_id: str, *messages: tuple[str, str], mode: str = "planning"):
        response = client.post(f"/api/v1/sessions/{session_id}/messages", content_type="application/json",
                               data={"mode": mode, "messages": [{"role": r, "content": c} for r, c in messages]})
        assert response.status_code == 202, response.content
        return response.json()

    post.authorization = f"Bearer {raw}"
    return post


def wait_until(condition, timeout: float = 40, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    runs = list(ExtractionRun.objects.order_by("created_at").values_list(
        "session__session_id", "status", "trigger", "attempts", "first_seq", "last_seq", "error"))
    sessions = list(SessionContext.objects.values_list("session_id", "version", "cursor_seq", "last_message_seq"))
    raise AssertionError(f"timed out waiting for {what}; runs: {runs}; sessions: {sessions}")


def settled(session_id: str, last_seq: int):
    session = SessionContext.objects.filter(session_id=session_id).first()
    if session is None or session.cursor_seq < last_seq:
        return None
    if ExtractionRun.objects.filter(session=session, status__in=["queued", "running"]).exists():
        return None
    return session


def test_messages_posted_through_the_api_end_up_in_the_snapshot(cluster, api):
    fake, start = cluster
    start("w1")

    for turn in range(3):
        api("w-api", ("user", f"question {turn}"), ("assistant", f"answer {turn}"))

    session = wait_until(lambda: settled("w-api", 6), what="the snapshot to take all 6 messages")
    assert session.summary.split() == [f"m{i}" for i in range(1, 7)]
    versions = list(Revision.objects.filter(session=session).order_by("version").values_list("version", "source"))
    assert [v for v, _ in versions] == list(range(1, len(versions) + 1))
    assert {s for _, s in versions} == {"extraction"}
    assert all(r.status in ("succeeded", "skipped") for r in ExtractionRun.objects.filter(session=session))


# Production time limits: an attempt's lease is 300 s + 10 %. A takeover well inside it can only come from
# seeing that the killed attempt is dead (its PostgreSQL connection, and with it its lock, went away).
LONG_LIMITS = {"CELERY_TASK_SOFT_TIME_LIMIT": "240", "CELERY_TASK_TIME_LIMIT": "300"}
LEASE = 330


def test_worker_killed_mid_extraction_leaves_nothing_half_done_and_another_takes_over_at_once(cluster, api):
    fake, start = cluster
    first = start("doomed", **LONG_LIMITS)
    fake.push(Reply(content="{}", delay=60))  # this worker never gets its answer

    api("w-kill", ("user", "Plan my move to Berlin."), ("assistant", "1. Find a flat\n2. Register the address"))
    wait_until(lambda: len(fake.requests) == 1, what="the model call")
    run = ExtractionRun.objects.get(session__session_id="w-kill")
    assert run.status == "running" and run.attempts == 1

    first.kill()
    killed = time.monotonic()

    session = SessionContext.objects.get(session_id="w-kill")
    assert (session.version, session.cursor_seq, session.summary) == (0, 0, "")
    assert not Revision.objects.filter(session=session).exists()

    # The whole worker is gone, so nothing rejects its task: the rescuer's startup sweep sends the run again
    # (or Redis restores the unacknowledged task after the 8 s visibility timeout), and its claim takes over.
    start("rescuer", **LONG_LIMITS)
    session = wait_until(lambda: settled("w-kill", 2), timeout=60, what="another worker to finish the run")
    took = time.monotonic() - killed
    print(f"taken over and finished {took:.1f} s after the kill")
    assert took < 60, f"taken over after {took:.1f} s"  # the lease would have been {LEASE} s
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 2
    assert Revision.objects.filter(session=session).count() == 1 and session.version == 1
    assert session.summary.split() == ["m1", "m2"]
    assert len(fake.requests) == 2


def test_pool_process_killed_mid_extraction_its_task_comes_back_and_is_taken_over_at_once(cluster, api):
    fake, start = cluster
    # Redis would restore the task only after 10 minutes: what brings it back is the main process rejecting it
    # (reject_on_worker_lost) when its pool process dies.
    worker = start("w-oom", **LONG_LIMITS, CELERY_VISIBILITY_TIMEOUT="600")
    fake.push(Reply(content="{}", delay=60))

    api("w-oom", ("user", "Book a table for four."), ("assistant", "Booked: Friday 20:00 at Tasca."))
    wait_until(lambda: len(fake.requests) == 1, what="the model call")

    assert worker.kill_pool_processes()
    killed = time.monotonic()

    session = wait_until(lambda: settled("w-oom", 2), timeout=60, what="the requeued task to finish the run")
    took = time.monotonic() - killed
    print(f"taken over and finished {took:.1f} s after the kill")
    assert took < 30, f"taken over after {took:.1f} s"  # the lease would have been {LEASE} s
    run = ExtractionRun.objects.get(session=session)
    assert run.status == "succeeded" and run.attempts == 2
    assert Revision.objects.filter(session=session).count() == 1 and session.version == 1
    assert session.summary.split() == ["m1", "m2"]
    assert "WorkerLostError" in worker.output()


def test_two_workers_one_session_burst_no_message_skipped_or_used_twice(cluster, api):
    fake, start = cluster
    fake.default = lambda request: dataclasses.replace(echo_extraction(request), delay=0.15)
    start("w1")
    start("w2")

    for batch in range(10):
        api("w-burst", ("user", f"u{batch}"), ("assistant", f"a{batch}"))

    session = wait_until(lambda: settled("w-burst", 20), timeout=60, what="all 20 messages consumed")
    assert session.summary.split() == [f"m{i}" for i in range(1, 21)]
    versions = list(Revision.objects.filter(session=session).order_by("version").values_list("version", flat=True))
    assert versions == list(range(1, len(versions) + 1))
    ranges = sorted((r.first_seq, r.last_seq) for r in ExtractionRun.objects.filter(session=session,
                                                                                      status="succeeded"))
    covered = [seq for first, last in ranges for seq in range(first, last + 1)]
    assert covered == list(range(1, 21))
    assert len(ranges) == len(versions)


def test_a_queued_run_whose_task_message_was_lost_is_sent_again_by_the_sweep(cluster, api):
    fake, start = cluster
    api("w-lost", ("user", "Renew my passport."), ("assistant", "1. Fill in the form\n2. Book an appointment"))
    run = ExtractionRun.objects.get(session__session_id="w-lost")
    # The broker lost the task message (it went down with a worker that had it): only the database knows.
    assert redis.Redis.from_url(REDIS_URL).delete(settings.CELERY_TASK_DEFAULT_QUEUE) == 1
    start("w1")  # its startup sweep leaves a run sent less than SESSIONCTX_EXTRACTION_RESEND_AFTER ago
    time.sleep(1.5)
    run.refresh_from_db()
    assert run.status == "queued" and not fake.requests

    assert send_pending(older_than=0) == (1, 0)  # what the beat sweep does after RESEND_AFTER

    session = wait_until(lambda: settled("w-lost", 2), what="the worker to run the resent task")
    run.refresh_from_db()
    assert (run.status, run.model, run.attempts) == ("succeeded", "fake-model", 1)
    assert session.summary.split() == ["m1", "m2"] and session.version == 1
    assert len(fake.requests) == 1


def test_connections_the_database_ended_between_tasks_are_replaced_and_the_next_run_succeeds(cluster, api):
    fake, start = cluster
    start("w1")
    api("w-drop", ("user", "Book a table for two."), ("assistant", "Booked for 19:30."))
    wait_until(lambda: settled("w-drop", 2), what="the first run")

    # A database restart or an idle timeout ends the worker's connections while it waits for its next task.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        ours = cursor.fetchone()[0]
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid NOT IN (pg_backend_pid(), %s)", (ours,)).fetchone()[0]
    assert ended >= 1

    api("w-drop", ("user", "Make it three."), ("assistant", "Changed to three at 19:30."))
    session = wait_until(lambda: settled("w-drop", 4), what="the run after the connections ended")
    runs = list(ExtractionRun.objects.filter(session=session).order_by("created_at")
                .values_list("status", "attempts", "error"))
    assert runs[-1] == ("succeeded", 1, ""), runs
    assert session.summary.split() == ["m1", "m2", "m3", "m4"]


# What the README promises for a SIGKILLed worker (whole worker, other workers already up, only the beat sweep to
# notice): its run taken over, and finished, within this many seconds, whether it was mid-extraction or only
# received.
TAKEOVER_BOUND = 25
# As in production: Redis gives a killed worker's unacknowledged task back only after 15 minutes.
PRODUCTION = {**LONG_LIMITS, "CELERY_VISIBILITY_TIMEOUT": "900"}


def _up_and_swept(start, name: str) -> Worker:
    """A worker that is up, its startup sweep done: it takes over nothing by starting after the kill."""
    worker = start(name, **PRODUCTION)
    wait_until(lambda: re.search(r"sweep_extractions\[\S+\] succeeded", worker.output()),
               what=f"{name}'s startup sweep")
    return worker


def _took_over(what: str, session_id: str, last_seq: int, killed: float):
    session = wait_until(lambda: settled(session_id, last_seq), timeout=200, what=what)
    took = time.monotonic() - killed
    print(f"{what}: taken over and finished {took:.1f} s after the kill")
    assert took < TAKEOVER_BOUND, f"{what}: taken over after {took:.1f} s"
    return session


def test_a_run_mid_extraction_on_a_killed_worker_is_taken_over_by_the_workers_already_up(cluster, api):
    fake, start = cluster
    start("beat", beat=True)
    doomed = start("doomed", **PRODUCTION, OPENAI_TIMEOUT="120")
    fake.push(Reply(content="{}", delay=60))  # this worker never gets its answer
    api("w-up", ("user", "Plan my move to Berlin."), ("assistant", "1. Find a flat\n2. Register the address"))
    wait_until(lambda: len(fake.requests) == 1, what="the model call")
    _up_and_swept(start, "rescuer")  # up before the kill: no startup sweep after it

    doomed.kill()
    killed = time.monotonic()

    session = _took_over("a run mid-extraction", "w-up", 2, killed)
    run = ExtractionRun.objects.get(session=session)
    assert (run.status, run.attempts, run.error) == ("succeeded", 2, "")
    assert session.summary.split() == ["m1", "m2"] and session.version == 1


def test_a_queued_run_a_killed_worker_had_received_is_taken_over_within_the_bound(cluster, api):
    fake, start = cluster
    start("beat", beat=True)
    api("w-held", ("user", "Renew my passport."), ("assistant", "1. Fill in the form\n2. Book an appointment"))
    session = SessionContext.objects.get(session_id="w-held")
    run = ExtractionRun.objects.get(session=session)
    # Another writer holds the session's row for a moment: the worker that receives the run waits in its claim,
    # the run still queued, and dies there.
    url = database_url(connection.settings_dict)
    with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as watcher:
        writer.execute(f"SELECT 1 FROM {SessionContext._meta.db_table} WHERE id = %s FOR UPDATE", [session.pk])
        doomed = start("doomed", **PRODUCTION)
        # Asked outside the writer's transaction, which would see pg_stat_activity as it was when it first looked.
        wait_until(lambda: watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND datname = current_database()").fetchone()[0],
                   what="the claim to wait for the row")
        doomed.kill()
        killed = time.monotonic()
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("queued", 0)
    start("rescuer", **PRODUCTION)

    session = _took_over("a received queued run", "w-held", 2, killed)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error) == ("succeeded", 1, "")
    assert session.summary.split() == ["m1", "m2"] and session.version == 1


def test_a_killed_workers_run_taken_over_by_the_next_update_says_so_and_by_which_run(cluster, api):
    fake, start = cluster
    doomed = start("doomed", **PRODUCTION, OPENAI_TIMEOUT="120")
    fake.push(Reply(content="{}", delay=60))  # this worker never gets its answer
    first = api("w-next", ("user", "Book a table for four."), ("assistant", "Booked: Friday 20:00 at Tasca."))
    wait_until(lambda: len(fake.requests) == 1, what="the model call")
    _up_and_swept(start, "rescuer")

    doomed.kill()
    session = SessionContext.objects.get(session_id="w-next")
    wait_until(lambda: attempt_lock_free(session), what="PostgreSQL to see the killed worker's connection close")
    second = api("w-next", ("user", "Make it five."), ("assistant", "Changed to five."))

    session = wait_until(lambda: settled("w-next", 4), timeout=60, what="the next run to take all 4 messages")
    dead = ExtractionRun.objects.get(pk=first["update"]["run_id"])
    taker = ExtractionRun.objects.get(pk=second["update"]["run_id"])
    assert (taker.status, taker.first_seq, taker.last_seq) == ("succeeded", 1, 4), taker.error
    assert dead.status == "superseded", (dead.status, dead.attempts, dead.error)
    assert dead.superseded_by_id == taker.pk
    assert str(taker.pk) in dead.error
    response = Client(HTTP_AUTHORIZATION=api.authorization).get(f"/api/v1/runs/{dead.pk}")
    assert (response.json()["status"], response.json()["superseded_by"]) == ("superseded", str(taker.pk))
    assert session.summary.split() == ["m1", "m2", "m3", "m4"] and session.version == 1
