"""Taking over a run whose worker died: at once on PostgreSQL, where a live attempt holds its session's advisory
lock on its own connection; after the attempt's lease where there is no such lock (SQLite)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest
from celery.exceptions import Retry
from django.db import OperationalError, connection
from django.utils import timezone

from contexts import tasks
from contexts.extraction import dispatch
from contexts.extraction.apply import extraction_run
from contexts.extraction.claim import Decision
from contexts.extraction.extractors.base import ExtractionResult, Extractor, Usage
from contexts.extraction.leases import extraction_lease
from contexts.models import ExtractionRun, Revision, SessionContext
from contexts.tasks import extract_context
from tests.extraction.conftest import attempt_lock_free, live_attempt, post
from tests.extraction.workers import database_url
from tests.factories import make_session
from tests.fake_openai import answer, error, prose

pytestmark = pytest.mark.django_db


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _needs_postgres():
    if not _postgres():
        pytest.skip("advisory locks need PostgreSQL (set DATABASE_URL)")


def _session_with_a_turn():
    session = make_session(mode="summary")
    post(session, ("user", "Can you move my dentist appointment to Friday?"),
         ("assistant", "Done: Friday at 10:00 with Dr Alves."))
    return session


def _left_running(session) -> ExtractionRun:
    """A run whose attempt started a moment ago, well inside its lease."""
    return ExtractionRun.objects.create(session=session, status="running", started_at=timezone.now(), attempts=1)


def test_a_redelivered_run_whose_attempt_died_is_taken_over_at_once_on_postgres(fake_model):
    session = _session_with_a_turn()
    run = _left_running(session)  # its worker was killed: no connection holds the session's attempt lock
    fake_model.push(answer({"summary": "Dentist moved to Friday 10:00."}))

    decision = extract_context.apply(args=[str(run.id)]).get()

    run.refresh_from_db()
    session.refresh_from_db()
    if _postgres():
        assert decision == "go"
        assert (run.status, run.attempts, run.to_version) == ("succeeded", 2, 1), run.error
        assert session.summary == "Dentist moved to Friday 10:00."
        assert list(Revision.objects.filter(session=session).values_list("version", flat=True)) == [1]
    else:  # nothing tells a dead attempt from a live one: the lease decides
        assert decision == "later"
        assert (run.status, run.attempts) == ("running", 1) and fake_model.requests == []
        assert session.version == 0


def test_a_redelivered_run_whose_attempt_is_alive_waits_for_its_lease(fake_model):
    session = _session_with_a_turn()
    run = _left_running(session)

    with live_attempt(session):
        claim = extraction_run(run_id=str(run.id))

    assert claim.decision == Decision.LATER
    lease = extraction_lease().total_seconds()
    assert lease - 5 < claim.retry_in <= lease + 1
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("running", 1) and fake_model.requests == []
    assert SessionContext.objects.get(pk=session.pk).version == 0


def test_a_run_left_running_by_a_dead_worker_is_superseded_by_the_run_that_takes_its_messages(fake_model):
    _needs_postgres()
    session = _session_with_a_turn()
    dead = _left_running(session)
    waiting = ExtractionRun.objects.create(session=session)
    fake_model.push(answer({"summary": "Dentist moved to Friday 10:00."}))

    assert extract_context.apply(args=[str(waiting.id)]).get() == "go"

    dead.refresh_from_db()
    waiting.refresh_from_db()
    assert (dead.status, dead.superseded_by_id, dead.attempts) == ("superseded", waiting.pk, 1), dead.error
    assert str(waiting.pk) in dead.error and dead.finished_at is not None
    assert (waiting.status, waiting.first_seq, waiting.last_seq) == ("succeeded", 1, 2), waiting.error
    # Its own task, redelivered later, finds it finished and does nothing.
    assert extract_context.apply(args=[str(dead.id)]).get() == "done"
    assert len(fake_model.requests) == 1


def test_a_dead_attempts_run_is_sent_again_once_not_at_every_sweep():
    session = _session_with_a_turn()
    run = ExtractionRun.objects.create(session=session, status="running", attempts=1,
                                       started_at=timezone.now() - extraction_lease() - timedelta(seconds=1))

    assert dispatch.pending() == [str(run.id)]  # past its lease: dead everywhere, lock or not
    # Its resent task may wait behind others in the broker: the next sweeps do not pile up copies of it.
    assert dispatch.pending() == []


@pytest.mark.parametrize("reply", [answer({"summary": "Dentist moved to Friday."}), error(400, "bad request"),
                                   prose("Sure! Anything else?")], ids=["succeeded", "model-error", "invalid"])
def test_the_attempt_holds_its_lock_through_the_model_call_and_gives_it_back_however_it_ends(fake_model, extract,
                                                                                              reply):
    _needs_postgres()
    session = _session_with_a_turn()
    free_during_call = []

    def respond(request):
        free_during_call.append(attempt_lock_free(session))  # asked while the attempt waits for the model
        return reply

    fake_model.default = respond

    run = extract(session)

    assert run.status in ("succeeded", "failed") and run.attempts == 1
    assert free_during_call and not any(free_during_call)
    assert attempt_lock_free(session)


class DatabaseGoesAway(Extractor):
    """A model call during which the database ends this process's connections; with `refuse_connections` it
    also stays unreachable until the test lets it back (a restart in progress)."""

    name = model = "db-goes-away"

    def __init__(self, admin: psycopg.Connection, *, refuse_connections: bool) -> None:
        self.admin, self.refuse_connections, self.calls = admin, refuse_connections, 0

    def extract(self, *, previous, mode, messages, deadline=None):
        self.calls += 1
        database = connection.settings_dict["NAME"]
        if self.refuse_connections:
            self.admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        ended = self.admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend'", [database]).fetchone()[0]
        assert ended >= 1
        return ExtractionResult(snapshot={**previous, "summary": "Never written."}, usage=Usage(model_calls=1))


@contextmanager
def database_admin():
    """A connection to the server's maintenance database, outside the test database, that can end its sessions
    and close it to new ones (opened again however the test ends)."""
    url = database_url({**connection.settings_dict, "NAME": "postgres"})
    database = connection.settings_dict["NAME"]
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            yield admin
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_database_stays_away_through_its_end_is_not_lost_and_the_sweep_resends_it(fake_model):
    _needs_postgres()
    session = _session_with_a_turn()
    run = ExtractionRun.objects.create(session=session)

    with database_admin() as admin:
        with pytest.raises(OperationalError):  # neither the answer nor the failure could be recorded
            extraction_run(run_id=str(run.id), extractor=DatabaseGoesAway(admin, refuse_connections=True))
        admin.execute(f'ALTER DATABASE "{connection.settings_dict["NAME"]}" ALLOW_CONNECTIONS true')

    # The database is back. Nothing was half written, the attempt lock went with the connection, and the run
    # is still there, running, its attempt plainly dead: the sweep sends it again at once.
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("running", 1)
    assert SessionContext.objects.get(pk=session.pk).version == 0
    assert not Revision.objects.filter(session=session).exists()
    assert attempt_lock_free(session)
    assert dispatch.pending() == [str(run.id)]

    fake_model.push(answer({"summary": "Dentist moved to Friday 10:00."}))
    assert extraction_run(run_id=str(run.id)).decision == Decision.GO  # what the resent task does

    run.refresh_from_db()
    assert (run.status, run.attempts, run.to_version, run.error) == ("succeeded", 2, 1, "")
    session = SessionContext.objects.get(pk=session.pk)
    assert (session.summary, session.version, session.cursor_seq) == ("Dentist moved to Friday 10:00.", 1, 2)
    assert list(Revision.objects.filter(session=session).values_list("version", "source")) == [(1, "extraction")]
    assert dispatch.pending() == []


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_ends_mid_attempt_fails_the_run_and_the_next_update_takes_its_messages(
        fake_model, extract):
    _needs_postgres()
    session = _session_with_a_turn()
    run = ExtractionRun.objects.create(session=session)

    with database_admin() as admin:
        extraction_run(run_id=str(run.id), extractor=DatabaseGoesAway(admin, refuse_connections=False))

    run.refresh_from_db()
    assert run.status == "failed" and "OperationalError" in run.error, run.error
    assert (SessionContext.objects.get(pk=session.pk).version, run.to_version) == (0, None)
    assert attempt_lock_free(session)

    fake_model.push(answer({"summary": "Dentist moved to Friday 10:00."}))
    again = extract(session)

    assert (again.status, again.first_seq, again.last_seq) == ("succeeded", 1, 2), again.error
    assert (session.summary, session.version) == ("Dentist moved to Friday 10:00.", 1)
    assert Revision.objects.filter(session=session).count() == 1


def test_the_sweep_resends_a_running_run_at_once_only_when_its_attempt_is_dead():
    session = _session_with_a_turn()
    run = _left_running(session)

    with live_attempt(session):
        assert str(run.id) not in dispatch.pending()
    # Its attempt is gone (on PostgreSQL the lock says so; elsewhere the lease is not over yet).
    assert (str(run.id) in dispatch.pending()) == _postgres()


@pytest.mark.django_db(transaction=True)
def test_a_run_queued_during_an_extraction_is_sent_when_that_one_succeeds(fake_model, extract):
    from tests.fake_openai import echo_extraction

    session = _session_with_a_turn()
    queued = []

    def more_arrives_then_answers(request):
        if not queued:  # while the model works on messages 1-2, two more arrive and ask for an update
            post(session, ("user", "And the hygienist?"), ("assistant", "Also Friday, at 10:45."))
            queued.append(ExtractionRun.objects.create(session=session))
            connection.close()  # this runs in the fake server's thread
        return echo_extraction(request)

    fake_model.default = more_arrives_then_answers

    first = extract(session)

    assert (first.status, first.first_seq, first.last_seq) == ("succeeded", 1, 2), first.error
    waiting = ExtractionRun.objects.get(pk=queued[0].pk)
    assert (waiting.status, waiting.first_seq, waiting.last_seq) == ("succeeded", 3, 4), waiting.error
    assert waiting.enqueued_at is not None
    assert SessionContext.objects.get(pk=session.pk).summary.split() == ["m1", "m2", "m3", "m4"]
    if _postgres():
        assert attempt_lock_free(session)


@pytest.mark.parametrize("retries", [0, 1])
def test_a_task_that_finds_a_live_attempt_looks_again_soon_once_then_after_the_lease(fake_model, retries):
    session = _session_with_a_turn()
    run = _left_running(session)

    # As a worker runs it: not eager, not called directly. The retry it asks for is sent (in these tests the
    # app runs it at once, eagerly, and it finds the attempt alive again) and raised with its countdown.
    extract_context.push_request(id=f"retry-{retries}", args=[str(run.id)], kwargs={}, retries=retries,
                                 is_eager=False, called_directly=False)
    try:
        with live_attempt(session), pytest.raises(Retry) as asked:
            extract_context.run(str(run.id))
    finally:
        extract_context.pop_request()

    lease = extraction_lease().total_seconds()
    if _postgres() and retries == 0:
        # Its worker may have died a moment ago, its connection (and lock) not closed yet: a second look soon.
        assert asked.value.when == tasks.LOCK_RECHECK_SECONDS
    else:
        assert lease - 5 < asked.value.when <= lease + 1
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("running", 1) and fake_model.requests == []
    assert SessionContext.objects.get(pk=session.pk).version == 0


def test_a_run_waiting_behind_a_live_attempt_is_not_sent_again_by_the_sweep(monkeypatch):
    monkeypatch.setattr(dispatch, "RECEIVED_GRACE", 0)  # as if the sweep came well after the worker got the task
    session = _session_with_a_turn()
    _left_running(session)
    waiting = ExtractionRun.objects.create(session=session, enqueued_at=timezone.now() - timedelta(seconds=30))

    with live_attempt(session):
        assert extraction_run(run_id=str(waiting.id)).decision == Decision.WAIT
        # Received, then told to wait: the running run sends it when it ends, so it is no lost task.
        assert dispatch.pending() == []
