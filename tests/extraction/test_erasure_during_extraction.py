"""An end user erased while a model call for their session is under way: the extraction ends cleanly and writes
nothing back (no session, run, revision or event of theirs reappears)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from contexts import services
from contexts.extraction.apply import extraction_run
from contexts.extraction.runs import extraction_request
from contexts.models import Event, ExtractionRun, Message, Revision, SessionContext
from contexts.services import Actor
from contexts.services.governance import user_erase
from tests.concurrency import wait_until_blocked_on_a_lock
from tests.fake_openai import answer

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_extraction_of_an_erased_session_ends_cleanly_without_recreating_it(fake_model):
    services.messages_post(session_id="er-run", user_id="u-run", messages=[
        {"role": "user", "content": "secret-7731 is my account"}, {"role": "assistant", "content": "ok"}])
    session = SessionContext.objects.get(session_id="er-run")
    run = extraction_request(session=session, trigger="test")
    fake_model.push(answer({"summary": "user account secret-7731"}, delay=1.5))
    outcome: dict = {}

    def work():
        try:
            outcome["decision"] = extraction_run(run_id=str(run.pk)).decision
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            outcome["error"] = exc
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 5
    while not fake_model.prompts and time.monotonic() < deadline:  # the model call has started
        time.sleep(0.02)
    assert fake_model.prompts, "the model was never called"
    record = user_erase(user_id="u-run", actor=Actor.system("test"))
    worker.join(10)

    assert not worker.is_alive() and "error" not in outcome, outcome
    assert record.counts["sessions"] == 1 and record.counts["runs"] >= 1
    assert not SessionContext.objects.filter(session_id="er-run").exists()
    assert not ExtractionRun.objects.exists() and not Revision.objects.exists() and not Message.objects.exists()
    assert not Event.objects.exists()


def test_an_update_asked_for_while_the_session_is_being_erased_answers_404_not_a_crash(on_postgres, write_key):
    if not on_postgres:
        pytest.skip("SQLite has no row locks: the request's IMMEDIATE transaction cannot interleave with an erasure")
    from django.db import transaction

    from contexts.services.snapshots import session_locked
    from tests.api.conftest import Agent, assert_error

    services.messages_post(session_id="er-ask", user_id="u-ask", messages=[{"role": "user", "content": "hello"}])
    session = SessionContext.objects.get(session_id="er-ask")
    held = threading.Event()

    def eraser():  # the erasure holds the row when the request comes, and commits once the request waits for it
        try:
            with transaction.atomic():
                session_locked(session)
                held.set()
                wait_until_blocked_on_a_lock()
                services.session_delete(session=session, actor=Actor.system("test"))
        finally:
            connection.close()

    thread = threading.Thread(target=eraser)
    thread.start()
    assert held.wait(5)
    try:
        response = Agent(write_key[1]).post("/api/v1/sessions/er-ask/context/update")
    finally:
        thread.join(10)

    assert_error(response, 404, "not_found")
    assert not SessionContext.objects.exists() and not ExtractionRun.objects.exists()
