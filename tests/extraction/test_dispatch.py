"""Asking for an update (runs.extraction_request) and getting runs to the workers (dispatch): requests that pile
up collapse into one queued run, and the sweep finds the runs the broker never got."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from contexts.extraction import dispatch
from contexts.extraction.extractors.registry import get_extractor
from contexts.extraction.runs import extraction_request
from contexts.models import ExtractionRun
from tests.extraction.conftest import post
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def _session():
    session = make_session(mode="summary")
    post(session, ("user", "Move my appointment to Friday."), ("assistant", "Done: Friday 10:00."))
    return session


def test_requests_that_pile_up_collapse_into_the_queued_run_and_send_it_once(django_capture_on_commit_callbacks):
    session = _session()
    with django_capture_on_commit_callbacks() as sends:
        first = extraction_request(session=session, trigger="auto")
        second = extraction_request(session=session, trigger="manual")

    assert second.pk == first.pk
    assert list(ExtractionRun.objects.values_list("status", "trigger")) == [("queued", "auto")]
    assert len(sends) == 1


def test_a_request_sends_again_a_queued_run_sent_too_long_ago(settings, django_capture_on_commit_callbacks):
    session = _session()
    long_ago = timezone.now() - timedelta(seconds=settings.SESSIONCTX_EXTRACTION_RESEND_AFTER + 1)
    stuck = ExtractionRun.objects.create(session=session, enqueued_at=long_ago)

    with django_capture_on_commit_callbacks(execute=True):
        again = extraction_request(session=session, trigger="auto")

    assert again.pk == stuck.pk
    stuck.refresh_from_db()
    assert stuck.status == "succeeded" and stuck.enqueued_at > long_ago, stuck.error
    assert ExtractionRun.objects.count() == 1


def test_the_sweep_finds_runs_never_sent_or_sent_too_long_ago_and_marks_them_sent(settings):
    session = _session()
    now = timezone.now()
    resend_after = timedelta(seconds=settings.SESSIONCTX_EXTRACTION_RESEND_AFTER)
    unsent = ExtractionRun.objects.create(session=session, error=f"{dispatch.UNSENT_NOTE} (broker unavailable)")
    stale = ExtractionRun.objects.create(session=session, enqueued_at=now - resend_after - timedelta(seconds=1))
    recent = ExtractionRun.objects.create(session=session, enqueued_at=now)
    for status in ("succeeded", "failed", "skipped"):
        ExtractionRun.objects.create(session=session, status=status, finished_at=now)

    found = dispatch.pending()

    assert found == [str(unsent.pk), str(stale.pk)]
    for run in (unsent, stale):
        run.refresh_from_db()
        assert run.enqueued_at >= now and run.error == ""
    assert dispatch.pending() == []  # marked as sent: the next sweep leaves them alone
    assert set(dispatch.pending(older_than=0)) == {str(unsent.pk), str(stale.pk), str(recent.pk)}


def test_a_run_the_broker_refused_stays_queued_saying_so():
    session = _session()
    run = ExtractionRun.objects.create(session=session, enqueued_at=timezone.now())

    dispatch.mark_unsent(run_id=str(run.pk), error="ConnectionError: refused")

    run.refresh_from_db()
    assert (run.status, run.enqueued_at) == ("queued", None)
    assert run.error.startswith(dispatch.UNSENT_NOTE) and "ConnectionError: refused" in run.error
    assert dispatch.pending() == [str(run.pk)]


def test_the_model_extractor_runs_when_a_model_is_configured_else_the_offline_one(settings):
    assert get_extractor().name == "offline"
    settings.SESSIONCTX_MODEL = "some-model"
    settings.OPENAI_API_KEY = "test-key"
    extractor = get_extractor()
    assert (extractor.name, extractor.model) == ("openai", "some-model")


def test_a_queued_run_a_worker_received_but_never_claimed_is_sent_again_after_a_short_grace():
    session = _session()
    now = timezone.now()
    grace = timedelta(seconds=dispatch.RECEIVED_GRACE)
    sent = now - grace - timedelta(seconds=5)
    # Its worker got the task and died before claiming it: the broker holds the task until its visibility timeout.
    lost = ExtractionRun.objects.create(session=session, enqueued_at=sent, received_at=sent + timedelta(seconds=1))
    claiming = ExtractionRun.objects.create(session=session, enqueued_at=sent, received_at=now)  # a claim under way
    resent = ExtractionRun.objects.create(session=session, enqueued_at=now, received_at=sent)  # sent since

    assert dispatch.pending() == [str(lost.pk)]

    lost.refresh_from_db()
    assert lost.enqueued_at >= now
    assert dispatch.pending() == []  # sent again: left alone until a worker gets it and the grace is over again
    assert {claiming.status, resent.status} == {"queued"}
