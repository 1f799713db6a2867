"""Update policies (#18.5): which posted turns, sweeps and reads queue a model-driven update, run in-process
with the offline extractor."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from contexts import services
from contexts.extraction.policy import idle_sweep, is_valid_policy, parse_policy
from contexts.models import ExtractionRun, Message, SessionContext
from contexts.selectors.usage import budget_day_start
from contexts.tasks import sweep_idle_updates
from tests.concurrency import once_before

pytestmark = pytest.mark.django_db


def _turn(i: int, words: int = 5) -> list[dict]:
    return [{"role": "user", "content": f"Question {i}: " + "word " * words, "idempotency_key": f"t{i}-u"},
            {"role": "assistant", "content": f"Answer {i}: we booked item {i}.", "idempotency_key": f"t{i}-a"}]


def _post(session_id: str, i: int, capture, **kw):
    with capture(execute=True):
        return services.messages_post(session_id=session_id, messages=_turn(i, **kw), mode="summary")


def _runs(session_id: str) -> int:
    return ExtractionRun.objects.filter(session__session_id=session_id).count()


@pytest.fixture(autouse=True)
def _auto_update(settings):
    settings.SESSIONCTX_AUTO_UPDATE = True
    settings.SESSIONCTX_UPDATE_POLICY = "every_turn"


def test_every_turn_updates_after_each_turn(django_capture_on_commit_callbacks):
    for i in range(1, 4):
        assert _post("p-every", i, django_capture_on_commit_callbacks).update is not None
    assert _runs("p-every") == 3


def test_every_n_turns_updates_once_n_turns_are_unseen(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "every_n_turns:3"
    queued = [_post("p-n", i, django_capture_on_commit_callbacks).update is not None for i in range(1, 8)]
    assert queued == [False, False, True, False, False, True, False]
    session = SessionContext.objects.get(session_id="p-n")
    # The two runs took in turns 1-6 (12 messages); turn 7 waits for two more.
    assert (session.cursor_seq, session.last_message_seq) == (12, 14)
    assert "Answer 6" in session.summary or "item 6" in session.summary


def test_a_sessions_own_policy_wins_over_the_installations(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "every_turn"
    services.session_get_or_create(session_id="p-own", update_policy="every_n_turns:2")
    queued = [_post("p-own", i, django_capture_on_commit_callbacks).update is not None for i in range(1, 5)]
    assert queued == [False, True, False, True]
    services.session_update_policy_set(session=SessionContext.objects.get(session_id="p-own"), update_policy="")
    assert _post("p-own", 5, django_capture_on_commit_callbacks).update is not None  # back to every_turn


def test_tokens_updates_once_the_unseen_messages_exceed_t_tokens(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "tokens:90"
    # A turn here is 80 characters (20 tokens at 4 characters a token): four are 80 tokens, five 100.
    queued = [_post("p-tok", i, django_capture_on_commit_callbacks, words=8).update is not None for i in range(1, 7)]
    assert queued == [False, False, False, False, True, False]
    assert _runs("p-tok") == 1
    # One long turn (500 words = 625 tokens) goes at once.
    assert _post("p-tok2", 1, django_capture_on_commit_callbacks, words=500).update is not None


def test_idle_waits_for_the_conversation_to_go_quiet_then_updates_once(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "idle:30"
    for i in range(1, 4):
        assert _post("p-idle", i, django_capture_on_commit_callbacks).update is None
    assert idle_sweep() == 0  # not quiet yet
    later = timezone.now() + timedelta(seconds=31)
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_sweep(now=later) == 1
    session = SessionContext.objects.get(session_id="p-idle")
    assert session.cursor_seq == session.last_message_seq == 6
    assert idle_sweep(now=later + timedelta(seconds=60)) == 0  # nothing unseen: no second call
    assert _runs("p-idle") == 1


def test_idle_sweep_asks_once_per_quiet_period_even_when_the_run_takes_nothing(
        settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "idle:30"
    _post("p-idle2", 1, django_capture_on_commit_callbacks)
    later = timezone.now() + timedelta(seconds=31)
    assert idle_sweep(now=later) == 1  # queued, not run (no commit callbacks): it stays pending
    assert idle_sweep(now=later) == 0
    ExtractionRun.objects.filter(session__session_id="p-idle2").update(status=ExtractionRun.Status.FAILED)
    assert idle_sweep(now=later + timedelta(seconds=60)) == 0  # failed on these messages: not every sweep again
    assert _runs("p-idle2") == 1


def test_only_idle_sessions_are_swept(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "every_n_turns:5"
    services.session_get_or_create(session_id="p-idle3", update_policy="idle:1")
    _post("p-idle3", 1, django_capture_on_commit_callbacks)
    _post("p-n5", 1, django_capture_on_commit_callbacks)
    Message.objects.update(created_at=timezone.now() - timedelta(seconds=5))
    assert sweep_idle_updates() == 1
    assert (_runs("p-idle3"), _runs("p-n5")) == (1, 0)


def test_nothing_is_queued_while_auto_update_is_off(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_AUTO_UPDATE = False
    settings.SESSIONCTX_UPDATE_POLICY = "idle:1"
    _post("p-off", 1, django_capture_on_commit_callbacks)
    assert idle_sweep(now=timezone.now() + timedelta(seconds=5)) == 0


@pytest.mark.parametrize("text", ["", "every_turn:1", "every_n_turns:0", "idle:", "tokens:-5", "idle:1s", "sometimes"])
def test_a_policy_that_is_not_one_of_the_four_is_refused(text):
    with pytest.raises(ValueError):
        parse_policy(text)


def test_sessions_still_talking_do_not_hide_a_quiet_one_from_the_sweep(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "every_turn"
    services.session_get_or_create(session_id="p-talking", update_policy="idle:3600")
    services.session_get_or_create(session_id="p-quiet", update_policy="idle:60")
    _post("p-talking", 1, django_capture_on_commit_callbacks)
    _post("p-quiet", 1, django_capture_on_commit_callbacks)
    assert idle_sweep(now=timezone.now() + timedelta(seconds=61), limit=1) == 1
    assert (_runs("p-talking"), _runs("p-quiet")) == (0, 1)


@pytest.mark.parametrize(("value", "ok"), [("every_n_turns:4", True), ("idle:600", True), ("tokens:0", False),
                                           ("every 3 turns", False)])
def test_the_installations_policy_is_checked_at_start_as_the_sessions_are(value, ok):
    result = subprocess.run([sys.executable, "-c", "import sessionctx.settings"],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DEBUG": "true", "SESSIONCTX_UPDATE_POLICY": value})
    assert (result.returncode == 0) is ok, result.stderr[-500:]
    assert ok or "SESSIONCTX_UPDATE_POLICY must be every_turn" in result.stderr
    assert is_valid_policy(value) is ok


def test_an_idle_update_refused_for_a_spent_budget_is_made_the_next_day(settings, django_capture_on_commit_callbacks):
    from tests.factories import make_session

    settings.SESSIONCTX_AUTO_UPDATE = True
    settings.SESSIONCTX_UPDATE_POLICY = "idle:60"
    settings.SESSIONCTX_DAILY_TOKEN_BUDGET = 1000
    spent = ExtractionRun.objects.create(session=make_session("busy"), status="succeeded", prompt_tokens=5000,
                                         finished_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        services.messages_post(session_id="quiet", mode="summary", messages=[
            {"role": "user", "content": "We are moving the shop database from MySQL to PostgreSQL."},
            {"role": "assistant", "content": "Noted: MySQL to PostgreSQL."}])
    # The sweeps below must fall on the budget's day (UTC) of the runs this test makes: run in the last minutes
    # before midnight, "five minutes later" was the next day (CI met it). The messages are dated to fit.
    quiet_from = min(timezone.now(), budget_day_start() + timedelta(hours=23, minutes=50))
    Message.objects.filter(session__session_id="quiet").update(created_at=quiet_from)
    later = quiet_from + timedelta(seconds=61)
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_sweep(now=later) == 1
    run = ExtractionRun.objects.get(session__session_id="quiet")
    assert run.status == "budget_exceeded" and "next update after midnight UTC" in run.error
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_sweep(now=later + timedelta(minutes=5)) == 0  # the same day: asked once, not every sweep

    # The next day the budget is fresh and the conversation still quiet: the update comes, as the run said.
    ExtractionRun.objects.filter(pk=spent.pk).update(finished_at=timezone.now() - timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        queued = idle_sweep(now=later + timedelta(days=1))
    quiet = SessionContext.objects.get(session_id="quiet")
    assert queued == 1 and quiet.cursor_seq == quiet.last_message_seq


def test_a_tool_calling_turn_counts_once(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "every_n_turns:2"

    def tool_turn(i: int) -> list[dict]:
        return [{"role": "user", "content": f"What is the weather in city {i}?"},
                {"role": "assistant", "content": f'{{"tool_call": "weather", "city": {i}}}'},
                {"role": "tool", "content": f"City {i}: 18 degrees, cloudy."},
                {"role": "assistant", "content": f"It is 18 degrees and cloudy in city {i}."}]

    queued = []
    for i in (1, 2, 3, 4):
        with django_capture_on_commit_callbacks(execute=True):
            posted = services.messages_post(session_id="p-tools", messages=tool_turn(i), mode="summary")
        queued.append(posted.update is not None)
    assert queued == [False, True, False, True]


def test_an_agents_greeting_before_the_user_speaks_is_no_turn(settings, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_UPDATE_POLICY = "every_n_turns:2"

    def post(*messages):
        with django_capture_on_commit_callbacks(execute=True):
            return services.messages_post(session_id="p-greeting", mode="summary", messages=[
                m if isinstance(m, dict) else {"role": m[0], "content": m[1]} for m in messages])

    assert post(("assistant", "Hi! I can help you plan your move. What are you working on?")).update is None
    assert post(*_turn(1)).update is None  # one turn: a user message and the reply after it
    assert post(*_turn(2)).update is not None  # the second
    # A reply posted alone to a question already taken in completes that turn; an extra message after it does not.
    assert post(("user", "And the boxes?")).update is None
    session = SessionContext.objects.get(session_id="p-greeting")
    session.cursor_seq = session.last_message_seq  # as if an update had just taken the question in
    session.save(update_fields=["cursor_seq"])
    assert post(("assistant", "Boxes come on Monday."), ("assistant", "Anything else?")).update is None
    assert post(*_turn(3)).update is not None  # the boxes turn and turn 3


@pytest.mark.django_db(transaction=True)
def test_a_session_erased_while_the_idle_sweep_runs_is_passed_over_and_the_others_still_queued(
        settings, on_postgres, django_capture_on_commit_callbacks):
    if not on_postgres:
        pytest.skip("SQLite has no row locks: its IMMEDIATE transactions serialise the sweep's request and the erasure")
    from contexts.services import Actor

    settings.SESSIONCTX_UPDATE_POLICY = "idle:60"
    for session_id in ("p-gone", "p-kept"):
        services.messages_post(session_id=session_id, messages=_turn(1), mode="summary")
    ExtractionRun.objects.all().delete()  # none asked for yet: both are the sweep's
    gone = SessionContext.objects.get(session_id="p-gone")

    def update_asked_for(sql: str) -> bool:  # the request locks the session's row
        return "FOR UPDATE" in sql and "contexts_sessioncontext" in sql

    def erase():  # a user's erasure in another process
        services.session_delete(session=gone, actor=Actor.system("test"))

    with once_before(update_asked_for, erase) as erased, django_capture_on_commit_callbacks(execute=False):
        queued = idle_sweep(now=timezone.now() + timedelta(seconds=61))

    assert erased and queued == 1
    assert not SessionContext.objects.filter(session_id="p-gone").exists()
    assert _runs("p-kept") == 1
