"""A worker taking a run (claim): the public Decision says what the attempt does, and only GO changes the run."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from contexts.extraction.claim import Decision, claim, finish
from contexts.extraction.leases import extraction_lease
from contexts.models import ExtractionRun, SessionContext
from tests.extraction.conftest import live_attempt, post
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def _claim(run_id):
    taken = claim(str(run_id), extractor="test", model="test-model")
    taken.release()  # this test is the attempt: it gives its session's lock back at once
    return taken


def _session():
    session = make_session(mode="summary")
    post(session, ("user", "Move my appointment to Friday."), ("assistant", "Done: Friday 10:00."))
    return session


def test_the_decisions_are_the_words_the_task_answers():
    assert [str(d) for d in Decision] == ["go", "done", "wait", "later"]


def test_a_queued_run_is_taken_for_this_attempt():
    session = _session()
    run = ExtractionRun.objects.create(session=session)

    taken = _claim(run.id)

    assert taken.decision == Decision.GO and taken.session.pk == session.pk and taken.run.pk == run.pk
    run.refresh_from_db()
    assert (run.status, run.attempts, run.extractor, run.model) == ("running", 1, "test", "test-model")
    assert run.started_at is not None


@pytest.mark.parametrize("status", ["succeeded", "failed", "skipped"])
def test_a_redelivered_finished_run_is_done_and_left_as_it_was(status):
    session = _session()
    run = ExtractionRun.objects.create(session=session, status=status, attempts=1, finished_at=timezone.now())

    taken = _claim(run.id)

    assert taken.decision == Decision.DONE
    stored = ExtractionRun.objects.get(pk=run.pk)
    assert (stored.status, stored.attempts, stored.finished_at) == (status, 1, run.finished_at)


def test_a_run_that_is_gone_or_whose_session_is_gone_is_done():
    assert _claim(uuid.uuid4()).decision == Decision.DONE
    session = _session()
    run = ExtractionRun.objects.create(session=session)
    SessionContext.objects.filter(pk=session.pk).delete()
    assert _claim(run.id).decision == Decision.DONE
    assert not ExtractionRun.objects.exists()


def test_a_run_waits_while_a_live_attempt_works_on_its_session():
    session = _session()
    running = ExtractionRun.objects.create(session=session, status="running", attempts=1, started_at=timezone.now())
    waiting = ExtractionRun.objects.create(session=session)

    with live_attempt(session):
        taken = _claim(waiting.id)

    assert taken.decision == Decision.WAIT
    assert ExtractionRun.objects.get(pk=waiting.pk).status == "queued"
    assert ExtractionRun.objects.get(pk=running.pk).attempts == 1


def test_a_redelivery_of_a_run_whose_attempt_is_alive_looks_again_after_the_lease():
    session = _session()
    run = ExtractionRun.objects.create(session=session, status="running", attempts=1, started_at=timezone.now())

    with live_attempt(session):
        taken = _claim(run.id)

    assert taken.decision == Decision.LATER
    assert 0 < taken.retry_in <= extraction_lease().total_seconds() + 1
    assert ExtractionRun.objects.get(pk=run.pk).attempts == 1


def test_a_run_lost_too_many_times_is_failed_instead_of_taken_again(settings):
    session = _session()
    long_ago = timezone.now() - extraction_lease() - timedelta(seconds=5)
    run = ExtractionRun.objects.create(session=session, status="running", started_at=long_ago,
                                       attempts=settings.SESSIONCTX_EXTRACTION_MAX_ATTEMPTS)

    assert _claim(run.id).decision == Decision.DONE

    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("Gave up after")


def test_only_the_attempt_that_owns_the_run_records_how_it_ended():
    session = _session()
    run = ExtractionRun.objects.create(session=session)
    first = _claim(run.id).run
    # Its lease ran out and a newer attempt took the run over.
    ExtractionRun.objects.filter(pk=run.pk).update(attempts=2)

    assert not finish(first, "succeeded", attempt=1, to_version=1)
    stored = ExtractionRun.objects.get(pk=run.pk)
    assert (stored.status, stored.to_version, stored.finished_at) == ("running", None, None)
    assert finish(stored, "succeeded", attempt=2, to_version=1)
    assert ExtractionRun.objects.get(pk=run.pk).status == "succeeded"
