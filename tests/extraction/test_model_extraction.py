"""Extraction through the real openai client against a fake OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from contexts import services
from contexts.models import ExtractionRun, Revision, SessionContext
from contexts.services import Actor
from contexts.tasks import extract_context
from tests.extraction.conftest import live_attempt, post
from tests.factories import make_session
from tests.fake_openai import answer, error, prose

pytestmark = pytest.mark.django_db

PLANNING = {"summary": "Ana wants to move her blog from WordPress to Hugo.", "goal": "Move the blog to Hugo",
            "plan": ["Export posts", "Convert to Markdown", "Deploy to Netlify"], "progress": ["Export posts"]}


def _turn(session):
    post(session, ("user", "I exported the posts already. How do I convert them?"),
         ("assistant", "Use wordpress-to-hugo-exporter, then check the front matter."))


def test_summary_mode_success_saves_summary_revision_cursor_and_run_figures(fake_model, extract):
    session = make_session(mode="summary")
    _turn(session)
    fake_model.push(answer({"summary": "The user exported posts and asked how to convert them."},
                           prompt_tokens=321, completion_tokens=45))

    run = extract(session)

    assert run.status == ExtractionRun.Status.SUCCEEDED, run.error
    assert session.summary == "The user exported posts and asked how to convert them."
    assert session.cursor_seq == 2 and session.version == 1
    revision = Revision.objects.get(session=session, version=1)
    assert revision.source == "extraction" and revision.actor == "model:fake-model"
    assert (run.extractor, run.model, run.prompt_tokens, run.completion_tokens) == ("openai", "fake-model", 321, 45)
    assert (run.first_seq, run.last_seq, run.from_version, run.to_version) == (1, 2, 0, 1)
    assert (run.attempts, run.model_calls, run.chunks) == (1, 1, 1)
    assert run.prompt_chars > 0 and run.error == ""
    request = fake_model.requests[0]
    assert request["model"] == "fake-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True
    assert request["response_format"]["json_schema"]["schema"]["required"] == ["summary"]


def test_planning_mode_success_saves_goal_plan_and_progress(fake_model, extract):
    session = make_session(mode="planning")
    _turn(session)
    fake_model.push(answer(PLANNING))

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert (session.goal, session.plan, session.progress) == (PLANNING["goal"], PLANNING["plan"], ["Export posts"])
    schema = fake_model.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["summary", "goal", "plan", "progress"]
    assert schema["additionalProperties"] is False


def test_extraction_on_a_built_up_snapshot_records_only_what_changed(fake_model, extract):
    session = make_session(mode="planning", content=PLANNING)
    _turn(session)
    progressed = {**PLANNING, "progress": ["Export posts", "Convert to Markdown"]}
    fake_model.push(answer(progressed))

    run = extract(session)

    assert run.status == "succeeded", run.error
    stored = SessionContext.objects.get(pk=session.pk)
    assert (stored.version, stored.cursor_seq) == (2, 2)
    assert (stored.plan, stored.progress) == (PLANNING["plan"], progressed["progress"])
    revision = Revision.objects.get(session=session, version=2)
    assert revision.changed_fields == ["progress"]
    assert revision.snapshot["plan"] == PLANNING["plan"] and revision.snapshot["progress"] == progressed["progress"]
    assert revision.snapshot["summary"] == PLANNING["summary"]
    assert (run.from_version, run.to_version) == (1, 2)

    # An answer that changes nothing moves the cursor but writes no version.
    post(session, ("user", "Thanks, converting now."), ("assistant", "Good luck with the conversion."))
    fake_model.push(answer(progressed))
    run = extract(session)
    stored.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert (stored.version, stored.cursor_seq, run.to_version) == (2, 4, 2)
    assert Revision.objects.filter(session=session).count() == 2


@pytest.mark.parametrize("first", [error(429, "slow down", retry_after="0"), error(429, "slow down"),
                                   error(500, "boom"), error(503, "overloaded")],
                         ids=["429-retry-after", "429-no-header", "500", "503"])
def test_transient_error_then_success_is_retried_and_counted(fake_model, extract, first):
    session = make_session(mode="planning")
    _turn(session)
    fake_model.push(first, answer(PLANNING))

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert session.plan == PLANNING["plan"] and session.version == 1
    assert (run.attempts, run.model_calls) == (1, 2)
    assert len(fake_model.requests) == 2


def test_model_that_keeps_failing_fails_the_run_and_changes_nothing(fake_model, extract):
    session = make_session(mode="summary", content={"summary": "Earlier facts."})
    _turn(session)
    fake_model.push(error(500), error(502), error(503))

    run = extract(session)

    assert run.status == "failed"
    assert "Model unavailable after 3 tries" in run.error and "503" in run.error
    assert session.summary == "Earlier facts." and session.version == 1 and session.cursor_seq == 0
    assert run.model_calls == 3 and run.to_version is None


def test_timeout_is_retried_then_fails_with_the_reason(fake_model, extract, settings):
    settings.OPENAI_TIMEOUT = 0.3
    settings.SESSIONCTX_MODEL_RETRIES = 1
    session = make_session(mode="summary", content={"summary": "Earlier facts."})
    _turn(session)
    fake_model.push(answer({"summary": "late"}, delay=1.0), answer({"summary": "late"}, delay=1.0))

    run = extract(session)

    assert run.status == "failed"
    assert "did not answer within 0.3 s" in run.error
    assert session.summary == "Earlier facts." and session.cursor_seq == 0
    assert run.model_calls == 2


def test_timeout_then_answer_succeeds(fake_model, extract, settings):
    settings.OPENAI_TIMEOUT = 0.3
    session = make_session(mode="summary")
    _turn(session)
    fake_model.push(answer({"summary": "late"}, delay=1.0), answer({"summary": "On time."}))

    run = extract(session)

    assert run.status == "succeeded" and session.summary == "On time." and run.model_calls == 2


def test_model_that_chats_instead_of_extracting_fails_and_no_text_becomes_the_summary(fake_model, extract):
    session = make_session(mode="summary", content={"summary": "Earlier facts."})
    _turn(session)
    chat = "Sure! To convert your posts, install the exporter plugin and run it."
    fake_model.push(prose(chat), prose(chat))

    run = extract(session)

    assert run.status == "failed"
    assert "answered in prose" in run.error and "after one repair try" in run.error
    assert session.summary == "Earlier facts." and session.version == 1 and session.cursor_seq == 0
    assert not Revision.objects.filter(session=session, source="extraction").exists()
    # The repair request: the same prompt, then what was wrong (its answer quoted, not repeated whole) and the schema.
    repair = fake_model.requests[1]["messages"]
    assert repair[:-1] == fake_model.requests[0]["messages"]
    assert "answered in prose" in repair[-1]["content"] and "only the JSON object" in repair[-1]["content"]
    assert '"required": ["summary"]' in repair[-1]["content"]


def test_one_repair_try_rescues_a_chatty_answer(fake_model, extract):
    session = make_session(mode="summary")
    _turn(session)
    fake_model.push(prose("Happy to help!"), answer({"summary": "Posts exported; conversion asked."}))

    run = extract(session)

    assert run.status == "succeeded" and session.summary == "Posts exported; conversion asked."
    assert run.model_calls == 2


def test_an_unusable_answer_is_quoted_on_the_run_but_never_in_the_logs(fake_model, extract, caplog):
    session = make_session(mode="summary")
    post(session, ("user", "My card ending 4417 was charged twice."), ("assistant", "I will refund one charge."))
    fake_model.push(prose("Sure! Your card ending 4417 was charged twice, I see."),
                    prose("Again: card ending 4417, refund coming."))

    with caplog.at_level("DEBUG"):
        run = extract(session)

    assert run.status == "failed" and "card ending 4417" in run.error
    assert "asking once for a repair" in caplog.text
    # The phrase, not the bare digits: the fake model's port or an object address may hold "4417" by chance.
    assert "ending 4417" not in caplog.text and "charged twice" not in caplog.text


def test_json_missing_required_keys_fails_the_run(fake_model, extract):
    session = make_session(mode="planning", content=PLANNING)
    _turn(session)
    fake_model.push(answer({"summary": "only a summary"}), answer({"summary": "still", "goal": "x"}))

    run = extract(session)

    assert run.status == "failed" and "lacks the required keys plan, progress" in run.error
    session.refresh_from_db()
    assert session.plan == PLANNING["plan"] and session.summary == PLANNING["summary"]


def test_json_of_the_wrong_types_fails_the_run(fake_model, extract):
    session = make_session(mode="planning")
    _turn(session)
    bad = {"summary": "s", "goal": "g", "plan": "one big string", "progress": []}
    fake_model.push(answer(bad), answer(bad))

    run = extract(session)

    assert run.status == "failed" and "plan: Must be a list of strings" in run.error
    assert session.version == 0 and session.plan == []


def test_bad_request_fails_at_once_without_retrying(fake_model, extract, settings):
    settings.SESSIONCTX_STRUCTURED_OUTPUT = "json_schema"  # under auto, the next way would be tried
    session = make_session(mode="summary")
    _turn(session)
    fake_model.push(error(400, "response_format json_schema is not supported"))

    run = extract(session)

    assert run.status == "failed" and "(400)" in run.error and "not supported" in run.error
    assert run.model_calls == 1 and len(fake_model.requests) == 1 and session.version == 0


def test_over_long_summary_is_retried_once_asking_to_compress(fake_model, extract, settings):
    settings.SESSIONCTX_SUMMARY_CHARS = 100
    session = make_session(mode="summary")
    _turn(session)
    fake_model.push(answer({"summary": "x" * 150}), answer({"summary": "Short enough."}))

    run = extract(session)

    assert run.status == "succeeded" and session.summary == "Short enough."
    assert "compress it to at most 100" in fake_model.requests[1]["messages"][-1]["content"]
    assert "at most 100 characters" in fake_model.requests[0]["messages"][0]["content"]


def _session_answered_with_summaries(fake_model, settings, *lengths: int):
    """A summary session with one turn, the model scripted to answer summaries of these lengths; asked size 100,
    hard bound 200."""
    settings.SESSIONCTX_SUMMARY_CHARS = 100
    settings.SESSIONCTX_MAX_SUMMARY_CHARS = 200
    session = make_session(mode="summary")
    _turn(session)
    fake_model.push(*(answer({"summary": "x" * length}) for length in lengths))
    return session


def test_summary_a_little_over_its_size_after_compress_request_is_kept_within_the_hard_bound(
        fake_model, extract, settings):
    session = _session_answered_with_summaries(fake_model, settings, 250, 140)

    run = extract(session)

    assert run.status == "succeeded" and run.model_calls == 2 and session.summary == "x" * 140
    assert session.version == 1


def test_summary_still_over_the_hard_bound_after_compress_request_fails(fake_model, extract, settings):
    session = _session_answered_with_summaries(fake_model, settings, 250, 240)

    run = extract(session)

    assert run.status == "failed" and "compress it to at most 200" in run.error
    assert session.version == 0 and session.summary == "" and session.cursor_seq == 0


def test_unreadable_previous_snapshot_never_leads_to_an_update_from_nothing(fake_model, extract):
    session = make_session(mode="planning", content=PLANNING)
    _turn(session)
    SessionContext.objects.filter(pk=session.pk).update(plan=5)  # damaged row: not a list

    run = extract(session)

    assert run.status == "failed" and "Could not read the previous snapshot" in run.error
    assert fake_model.requests == []
    assert Revision.objects.filter(session=session).count() == 1
    session.refresh_from_db()
    assert session.summary == PLANNING["summary"] and session.cursor_seq == 0


def test_redelivery_of_finished_work_applies_nothing_twice(fake_model, extract):
    session = make_session(mode="summary")
    _turn(session)
    run = extract(session)
    assert run.status == "succeeded"

    assert extract_context.apply(args=[str(run.id)]).get() == "done"

    assert Revision.objects.filter(session=session).count() == 1
    assert len(fake_model.requests) == 1


def test_run_with_nothing_new_is_skipped(fake_model, extract):
    session = make_session(mode="summary")
    _turn(session)
    assert extract(session).status == "succeeded"

    run = extract(session)

    assert run.status == "skipped" and run.attempts == 1 and len(fake_model.requests) == 1
    assert session.version == 1


def test_run_lost_too_many_times_fails_instead_of_looping(fake_model, settings):
    from datetime import timedelta

    from django.utils import timezone

    session = make_session(mode="summary")
    _turn(session)
    long_ago = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    run = ExtractionRun.objects.create(session=session, status="running", started_at=long_ago,
                                       attempts=settings.SESSIONCTX_EXTRACTION_MAX_ATTEMPTS)

    extract_context.apply(args=[str(run.id)])

    run.refresh_from_db()
    assert run.status == "failed" and "Gave up after 5 attempts" in run.error
    assert fake_model.requests == [] and SessionContext.objects.get(pk=session.pk).version == 0


def test_a_run_waits_while_another_run_of_the_session_is_running(fake_model):
    from django.utils import timezone

    session = make_session(mode="summary")
    _turn(session)
    ExtractionRun.objects.create(session=session, status="running", started_at=timezone.now(), attempts=1)
    waiting = ExtractionRun.objects.create(session=session)

    with live_attempt(session):
        assert extract_context.apply(args=[str(waiting.id)]).get() == "wait"

    waiting.refresh_from_db()
    assert waiting.status == "queued" and fake_model.requests == []


@pytest.mark.django_db(transaction=True)
def test_staff_edit_of_another_field_during_the_model_call_is_kept_and_the_answer_merged_onto_it(fake_model, extract):
    session = make_session(mode="planning", content=PLANNING)
    _turn(session)
    calls = []

    def staff_edits_then_answers(request):
        calls.append(request)
        if len(calls) == 1:  # while the model "thinks", a person edits the goal
            current = SessionContext.objects.get(pk=session.pk)
            services.snapshot_update(session=current, expected_version=current.version,
                                     changes={"goal": "Move the blog to Hugo and keep the URLs"},
                                     source="staff", actor=Actor.system("staff-test"))
            connection.close()  # this runs in the fake server's thread
        previous = json.loads(request["messages"][1]["content"].split("Previous context:\n")[1]
                              .split("\nNew messages:")[0])
        return answer({**previous, "summary": "Posts exported; converting next.", "progress": ["Export posts"]})

    fake_model.default = staff_edits_then_answers

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert len(calls) == 1  # the model left the goal alone: its answer merges, no second call
    assert session.goal == "Move the blog to Hugo and keep the URLs"
    assert session.summary == "Posts exported; converting next." and session.progress == ["Export posts"]
    sources = list(Revision.objects.filter(session=session).order_by("version").values_list("version", "source"))
    assert sources == [(1, "api"), (2, "staff"), (3, "extraction")]
    assert (run.from_version, run.to_version) == (1, 3)  # computed from version 1, written as 3


@pytest.mark.django_db(transaction=True)
def test_an_attempt_overtaken_by_a_newer_one_writes_nothing(fake_model, extract):
    from django.db.models import F
    from django.utils import timezone

    session = make_session(mode="planning", content=PLANNING)
    _turn(session)

    def newer_attempt_takes_over_then_answers(request):
        # While this attempt waits for the model, its lease runs out and another worker claims the run.
        ExtractionRun.objects.filter(session_id=session.pk).update(attempts=F("attempts") + 1,
                                                                   started_at=timezone.now())
        connection.close()  # this runs in the fake server's thread
        return answer({**PLANNING, "summary": "From the overtaken attempt."})

    fake_model.default = newer_attempt_takes_over_then_answers

    run = extract(session)

    assert (run.status, run.attempts, run.to_version) == ("running", 2, None)  # the newer attempt's to finish
    assert (session.version, session.cursor_seq, session.summary) == (1, 0, PLANNING["summary"])
    assert list(Revision.objects.filter(session=session).values_list("version", flat=True)) == [1]
