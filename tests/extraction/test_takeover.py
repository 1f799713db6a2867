"""Taking over a run whose worker died: at once on PostgreSQL, where a live attempt holds its session's advisory
lock on its own connection; after the attempt's lease where there is no such lock (SQLite)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from contexts import services
from contexts.models import ExtractionRun, Revision, SessionContext
from contexts.tasks import extract_context
from tests.factories import make_session
from tests.fake_openai import answer, error, prose
from tests.extraction.conftest import attempt_lock_free, live_attempt, post

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
        claim = services.extraction_run(run_id=str(run.id))

    assert claim.decision == "later"
    lease = services._extraction_lease().total_seconds()
    assert lease - 5 < claim.retry_in <= lease + 1
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("running", 1) and fake_model.requests == []
    assert SessionContext.objects.get(pk=session.pk).version == 0


def test_a_run_left_running_on_the_session_by_a_dead_worker_is_abandoned_at_once(fake_model):
    _needs_postgres()
    session = _session_with_a_turn()
    dead = _left_running(session)
    waiting = ExtractionRun.objects.create(session=session)
    fake_model.push(answer({"summary": "Dentist moved to Friday 10:00."}))

    assert extract_context.apply(args=[str(waiting.id)]).get() == "go"

    dead.refresh_from_db()
    waiting.refresh_from_db()
    assert dead.status == "failed" and dead.error.startswith("Abandoned")
    assert (waiting.status, waiting.first_seq, waiting.last_seq) == ("succeeded", 1, 2), waiting.error


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


def test_the_lock_is_given_back_when_even_recording_the_failure_fails(fake_model, monkeypatch):
    _needs_postgres()
    session = _session_with_a_turn()
    run = ExtractionRun.objects.create(session=session)
    fake_model.push(answer({"summary": "Dentist moved to Friday."}))

    def database_gone(*args, **kwargs):
        raise RuntimeError("connection lost")

    monkeypatch.setattr(services, "_extraction_apply", database_gone)
    monkeypatch.setattr(services, "_extraction_end", database_gone)

    with pytest.raises(RuntimeError):
        services.extraction_run(run_id=str(run.id))

    assert attempt_lock_free(session)


def test_the_sweep_resends_a_running_run_at_once_only_when_its_attempt_is_dead():
    session = _session_with_a_turn()
    run = _left_running(session)

    with live_attempt(session):
        assert str(run.id) not in services.extraction_pending()
    # Its attempt is gone (on PostgreSQL the lock says so; elsewhere the lease is not over yet).
    assert (str(run.id) in services.extraction_pending()) == _postgres()


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
def test_a_task_that_finds_a_live_attempt_looks_again_soon_once_then_after_the_lease(fake_model, monkeypatch,
                                                                                    retries):
    from contexts import tasks

    session = _session_with_a_turn()
    run = _left_running(session)
    asked = []

    class Retry(Exception):
        pass

    def retry(countdown=None, **kwargs):
        asked.append(countdown)
        return Retry()

    monkeypatch.setattr(extract_context, "retry", retry)
    extract_context.push_request(retries=retries, is_eager=False)  # as a worker runs it
    try:
        with live_attempt(session), pytest.raises(Retry):
            extract_context.run(str(run.id))
    finally:
        extract_context.pop_request()

    lease = services._extraction_lease().total_seconds()
    if _postgres() and retries == 0:
        # Its worker may have died a moment ago, its connection (and lock) not closed yet: a second look soon.
        assert asked == [tasks.LOCK_RECHECK_SECONDS]
    else:
        assert len(asked) == 1 and lease - 5 < asked[0] <= lease + 1
    assert ExtractionRun.objects.get(pk=run.pk).attempts == 1 and fake_model.requests == []
