"""A broker that is down loses nothing; operators send stuck runs again and re-extract from the shell."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from django.core.management import CommandError, call_command

from contexts.extraction.dispatch import UNSENT_NOTE
from contexts.extraction.runs import extraction_request
from contexts.models import ExtractionRun, Revision, SessionContext
from tests.extraction.conftest import celery_broker, post
from tests.factories import make_session

pytestmark = pytest.mark.django_db

DEAD_BROKER = "redis://127.0.0.1:1/0"


def _request_with_broker_down(session, django_capture_on_commit_callbacks):
    with celery_broker(DEAD_BROKER), django_capture_on_commit_callbacks(execute=True):
        run = extraction_request(session=session, trigger="auto")
    run.refresh_from_db()
    return run


def test_broker_down_keeps_messages_and_a_queued_run_with_a_note(django_capture_on_commit_callbacks):
    session = make_session(mode="planning")
    post(session, ("user", "I need to renew my passport."), ("assistant", "1. Fill the form\n2. Book a slot"))

    run = _request_with_broker_down(session, django_capture_on_commit_callbacks)

    assert run.status == "queued" and run.enqueued_at is None
    assert run.error.startswith(UNSENT_NOTE) and "update_context --pending" in run.error
    session.refresh_from_db()
    assert session.last_message_seq == 2 and session.cursor_seq == 0 and session.version == 0


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_takes_the_connection_and_never_answers_does_not_hold_the_request(
        django_capture_on_commit_callbacks):
    # Redis behind a dead proxy, or stopped with SIGSTOP: the TCP connection opens, nothing ever comes back. The
    # publish used to wait for ever, and so did the request that posted the turn.
    session = make_session(mode="planning")
    post(session, ("user", "I need to renew my passport."), ("assistant", "1. Fill the form\n2. Book a slot"))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        outcome = {}

        def ask():
            with celery_broker(f"redis://127.0.0.1:{silent.getsockname()[1]}/0"), \
                    django_capture_on_commit_callbacks(execute=True):
                outcome["run"] = extraction_request(session=session, trigger="auto")

        started = time.monotonic()
        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        asking.join(60)
        assert not asking.is_alive(), "the request still waits for the broker after 60 s"
    assert time.monotonic() - started < 30
    run = ExtractionRun.objects.get(pk=outcome["run"].pk)
    assert run.status == "queued" and run.error.startswith(UNSENT_NOTE)


def test_operator_sends_stuck_runs_once_the_broker_is_back(django_capture_on_commit_callbacks, capsys):
    session = make_session(mode="planning")
    post(session, ("user", "I need to renew my passport."), ("assistant", "Plan:\n1. Fill the form\n2. Book a slot"))
    run = _request_with_broker_down(session, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("update_context", "--pending")

    run.refresh_from_db()
    session.refresh_from_db()
    assert run.status == "succeeded" and run.extractor == "offline" and run.error == ""
    assert session.plan == ["Fill the form", "Book a slot"] and session.cursor_seq == 2
    assert "1 run(s) sent" in capsys.readouterr().out


def test_next_request_sends_a_run_the_broker_refused(django_capture_on_commit_callbacks):
    session = make_session(mode="summary")
    post(session, ("user", "Hello, my order 1234 never arrived."), ("assistant", "Sorry! Let me check."))
    run = _request_with_broker_down(session, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        again = extraction_request(session=session, trigger="auto")

    assert again.pk == run.pk
    run.refresh_from_db()
    assert run.status == "succeeded" and "1234" in run.session.summary


def test_pending_with_broker_still_down_says_so_and_keeps_the_run(django_capture_on_commit_callbacks):
    session = make_session(mode="summary")
    post(session, ("user", "hi"), ("assistant", "hello"))
    run = _request_with_broker_down(session, django_capture_on_commit_callbacks)

    with celery_broker(DEAD_BROKER), pytest.raises(CommandError, match="still unavailable"):
        call_command("update_context", "--pending")

    run.refresh_from_db()
    assert run.status == "queued" and run.error.startswith(UNSENT_NOTE)



@pytest.mark.parametrize("seconds", ["nan", "inf", "1e400", "1e12"])
def test_pending_with_an_age_that_is_no_number_of_seconds_is_a_command_error_and_keeps_the_run(
        seconds, django_capture_on_commit_callbacks):
    # NaN, infinity, or further back than any date: a ValueError or OverflowError traceback before.
    session = make_session(mode="summary")
    post(session, ("user", "hi"), ("assistant", "hello"))
    run = _request_with_broker_down(session, django_capture_on_commit_callbacks)

    with pytest.raises(CommandError, match="--older-than"):
        call_command("update_context", "--pending", "--older-than", seconds)

    run.refresh_from_db()
    assert run.status == "queued" and run.error.startswith(UNSENT_NOTE)

def test_update_context_command_runs_an_extraction(capsys):
    session = make_session("cmd-1", mode="planning")
    post(session, ("user", "I want to set up CI for my repo."),
         ("assistant", "Here's the plan:\n1. Add a workflow file\n2. Cache dependencies\n3. Run the tests"))

    call_command("update_context", "cmd-1", "--sync")

    session.refresh_from_db()
    assert session.plan == ["Add a workflow file", "Cache dependencies", "Run the tests"]
    assert (session.version, session.cursor_seq) == (1, 2)
    run = ExtractionRun.objects.get(session=session)
    assert (run.status, run.trigger, run.extractor, run.first_seq, run.last_seq, run.to_version) == (
        "succeeded", "command", "offline", 1, 2, 1)
    assert list(Revision.objects.filter(session=session).values_list("version", "source")) == [(1, "extraction")]
    assert "succeeded" in capsys.readouterr().out
    with pytest.raises(CommandError, match="does not exist"):
        call_command("update_context", "nope")
    assert ExtractionRun.objects.count() == 1


def test_reextract_filters_dry_runs_and_starts_from_scratch(capsys):
    planning = make_session("re-1", mode="planning", content={"summary": "stale", "goal": "stale goal"})
    post(planning, ("user", "I need to migrate the database to PostgreSQL."),
         ("assistant", "Steps:\n1. Dump the data\n2. Load it into PostgreSQL"))
    make_session("re-2", mode="summary")

    with pytest.raises(CommandError, match="--all"):
        call_command("reextract")
    call_command("reextract", "--mode", "planning", "--dry-run")
    assert "1 session(s) match" in capsys.readouterr().out
    assert ExtractionRun.objects.count() == 0

    call_command("reextract", "--mode", "planning", "--from-scratch", "--reason", "new rules", "--sync")

    planning.refresh_from_db()
    assert planning.goal.startswith("I need to migrate the database to PostgreSQL")
    assert planning.plan == ["Dump the data", "Load it into PostgreSQL"] and planning.summary != "stale"
    sources = list(Revision.objects.filter(session=planning).order_by("version").values_list("source", flat=True))
    assert sources == ["api", "reset", "extraction"]
    assert "1 session(s): 1 succeeded" in capsys.readouterr().out


def test_reextract_sync_exits_non_zero_when_runs_failed(fake_model, settings, capsys):
    # It printed "1 failed" and exited 0, so `reextract ... --sync && echo done` said done; update_context --sync
    # already exits 1 on a failed run.
    from tests.fake_openai import error

    settings.SESSIONCTX_MODEL_RETRIES = 0
    fake_model.default = lambda request: error(500, "model down")
    session = make_session("re-f", mode="planning")
    post(session, ("user", "I need to migrate the database."), ("assistant", "Steps:\n1. Dump\n2. Load"))

    with pytest.raises(CommandError, match="1 run"):
        call_command("reextract", "--mode", "planning", "--sync")

    assert "1 session(s): 1 failed" in capsys.readouterr().out
    assert ExtractionRun.objects.get(session=session).status == "failed"


@pytest.mark.django_db(transaction=True)
def test_without_a_broker_the_commands_do_the_update_themselves_and_say_how_it_ended(fake_model, settings, capsys):
    # The embedded default runs updates on threads of the process: a command that handed its run to them said
    # "queued" and exited 0 while the run went on (and reextract could not count a failed one).
    from tests.fake_openai import error

    settings.SESSIONCTX_INPROCESS_WORKERS = 2
    session = make_session("cmd-embedded", mode="planning")
    post(session, ("user", "I want to set up CI."), ("assistant", "Plan:\n1. Add a workflow\n2. Run the tests"))
    settings.SESSIONCTX_MODEL_RETRIES = 0
    fake_model.default = lambda request: error(500, "model down")

    with pytest.raises(CommandError, match="model"):
        call_command("update_context", "cmd-embedded")
    assert "failed" in capsys.readouterr().out
    with pytest.raises(CommandError, match="1 run"):
        call_command("reextract", "--all")
    assert "1 session(s): 1 failed" in capsys.readouterr().out
    assert list(ExtractionRun.objects.values_list("status", flat=True)) == ["failed", "failed"]


@pytest.mark.parametrize("when", ["2026-13-01", "2026-02-30", "2026-01-01T25:00:00Z", "0001-01-01T00:00:00+14:00",
                                  "9999-12-31T23:59:59-14:00"])
def test_reextract_with_an_impossible_updated_after_is_a_command_error_and_queues_nothing(when):
    # Well formed but no time there is (month 13, 30 February): a traceback before; outside years 1-9999 in UTC a
    # traceback on SQLite, and silently run on PostgreSQL.
    make_session("re-3", mode="planning", content={"summary": "kept"})
    with pytest.raises(CommandError, match="--updated-after"):
        call_command("reextract", "--updated-after", when, "--from-scratch", "--reason", "r")
    assert ExtractionRun.objects.count() == 0 and Revision.objects.count() == 1


@pytest.mark.parametrize("option", ["--user-id", "--agent-id"])
def test_reextract_with_a_blank_user_or_agent_filter_is_a_command_error_and_resets_no_session(option):
    # `reextract --user-id "$USER" --from-scratch` with $USER unset named no filter, yet counted as one: every
    # session of the project was emptied (a reset revision each) and queued again.
    make_session("re-b1", mode="planning", content={"summary": "kept"}, user_id="u-1", agent_id="bot")
    make_session("re-b2", mode="planning", content={"summary": "kept too"}, user_id="u-2", agent_id="bot")
    for blank in ("", "  "):
        with pytest.raises(CommandError, match=option):
            call_command("reextract", option, blank, "--from-scratch", "--reason", "erasure request")
    assert ExtractionRun.objects.count() == 0 and Revision.objects.count() == 2
    assert set(SessionContext.objects.values_list("summary", flat=True)) == {"kept", "kept too"}
