"""The model path against servers shaped like real OpenAI-compatible ones (llama.cpp's llama-server with a small
model and a small context), through the real openai client and tests/fake_openai.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.extraction.conftest import post
from tests.factories import make_session
from tests.fake_openai import Reply, answer, echo_extraction, error, looping, parse_prompt
from tests.test_settings import ROOT, _import_settings

pytestmark = pytest.mark.django_db


def _turn(session):
    post(session, ("user", "python, nginx and postgres are installed on the box now"),
         ("assistant", "Great. Next: point the DNS at the box."))


def _texts(request) -> str:
    return "\n".join(m["content"] for m in request["messages"])


def test_each_call_asks_for_a_bounded_answer_and_a_cut_off_one_is_not_sent_again_as_is(fake_model, extract):
    fake_model.default = looping  # never closes its JSON: max_tokens is all that stops it
    session = make_session(mode="summary")
    _turn(session)

    run = extract(session)

    assert [r.get("max_tokens") for r in fake_model.requests] == [500, 500]  # 1,200-character summary bound
    first, repair = fake_model.requests
    assert repair["messages"] != first["messages"]
    assert "cut off" in repair["messages"][-1]["content"]
    assert (run.status, run.model_calls) == ("failed", 2)
    assert "cut off at the output token limit" in run.error


def test_the_repair_of_a_cut_off_answer_fits_a_small_context(settings):
    # llama-server -c 2048: the first answer is cut off at its limit; repeating it back overflowed the context.
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(context_tokens=2048) as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = "small", fake.url, 5.0
        settings.SESSIONCTX_RETRY_BACKOFF = 0.01
        fake.push(Reply(content='{"summary": "' + "the box the box " * 450, finish_reason="length",
                        completion_tokens=1800))
        fake.default = echo_extraction
        session = make_session(mode="summary")
        _turn(session)
        from contexts.extraction.apply import extraction_run_now

        run = extraction_run_now(session=session, trigger="test")
        statuses = len(fake.requests)
        repair_text = _texts(fake.requests[-1])

    assert run.status == "succeeded", run.error
    assert statuses == 2
    assert "the box the box" not in repair_text  # the error and the schema went back, not the bad answer
    assert '"additionalProperties": false' in repair_text


def test_a_prompt_too_big_for_the_context_fails_with_what_to_change_and_is_not_repaired(settings):
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(context_tokens=200) as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = "small", fake.url, 5.0
        session = make_session(mode="summary")
        _turn(session)
        run = extraction_run_now(session=session, trigger="test")
        sent = len(fake.requests)

    assert (run.status, sent, run.model_calls) == ("failed", 1, 1)
    assert "do not fit the model's context" in run.error and "SESSIONCTX_PROMPT_BUDGET_CHARS" in run.error
    assert "exceeds the available context size" in run.error


def test_every_http_request_is_counted_in_the_run_the_client_retries_nothing_itself(fake_model, settings, extract):
    settings.OPENAI_MAX_RETRIES = 1  # the old default: the client retried each call once, out of sight
    settings.SESSIONCTX_MODEL_RETRIES = 3
    fake_model.push(error(503, "loading model"), error(503, "loading model"),
                    answer({"summary": "Python, nginx and postgres are installed."}))
    session = make_session(mode="summary")
    _turn(session)

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert (run.model_calls, len(fake_model.requests)) == (3, 3)


def test_the_runs_api_shows_each_runs_calls_tokens_and_latency(fake_model, settings, extract, client, read_key):
    settings.SESSIONCTX_MODEL_RETRIES = 3
    fake_model.push(error(503, "loading model"), answer({"summary": "Installed."}, prompt_tokens=300,
                                                        completion_tokens=12, delay=0.2))
    session = make_session("runs-figures", mode="summary")
    _turn(session)
    extract(session)

    response = client.get("/api/v1/sessions/runs-figures/runs", HTTP_AUTHORIZATION=f"Bearer {read_key[1]}")

    assert response.status_code == 200, response.content
    (shown,) = response.json()["results"]
    assert (shown["status"], shown["model_calls"], shown["prompt_tokens"], shown["completion_tokens"]) == (
        "succeeded", 2, 300, 12)
    assert shown["latency_ms"] >= 200


def test_a_model_that_times_out_is_not_sent_the_same_request_again_and_again(fake_model, settings, extract):
    settings.OPENAI_TIMEOUT = 0.3
    settings.SESSIONCTX_MODEL_RETRIES = 10
    fake_model.default = lambda request: answer({"summary": "late"}, delay=1.0)
    session = make_session(mode="summary")
    _turn(session)

    run = extract(session)

    assert (run.status, run.model_calls, len(fake_model.requests)) == ("failed", 2, 2)
    assert "OPENAI_TIMEOUT" in run.error


def _limits(**env) -> dict:
    code = ("import json, sessionctx.settings as s; print(json.dumps([s.CELERY_TASK_SOFT_TIME_LIMIT, "
            "s.CELERY_TASK_TIME_LIMIT, s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout']]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**_clean_env(), **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _clean_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "OPENAI_"))} | {"DEBUG": "true"}


def test_a_slow_local_model_with_a_long_timeout_still_extracts(fake_model, settings, extract):
    soft, hard, visibility = _limits(OPENAI_TIMEOUT="250")
    assert soft < hard < visibility
    settings.OPENAI_TIMEOUT, settings.CELERY_TASK_SOFT_TIME_LIMIT = 250.0, soft
    session = make_session(mode="summary")
    _turn(session)

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert session.summary == "m1 m2"


def test_settings_refuse_task_limits_that_leave_no_room_for_a_model_call():
    result = _import_settings(DEBUG="true", OPENAI_TIMEOUT="300", CELERY_TASK_SOFT_TIME_LIMIT="240")
    assert result.returncode != 0
    assert "CELERY_TASK_SOFT_TIME_LIMIT (240 s) leaves no room for a model call" in result.stderr
    result = _import_settings(DEBUG="true", OPENAI_MAX_RETRIES="2")
    assert result.returncode != 0 and "SESSIONCTX_MODEL_RETRIES" in result.stderr


def test_an_answer_that_ignores_informative_messages_is_recorded_and_they_are_shown_again(fake_model, settings,
                                                                                         extract):
    settings.SESSIONCTX_UNCHANGED_RETRIES = 2
    previous = {"summary": "Setting up a server.", "goal": "Deploy the app", "plan": ["Install packages",
                "Point DNS"], "progress": []}
    session = make_session(mode="planning", content=previous)
    _turn(session)
    fake_model.default = lambda request: answer(previous)  # copies the previous snapshot, whatever it is shown

    runs = [extract(session) for _ in range(3)]

    assert [r.status for r in runs[:2]] == ["no_change", "no_change"]
    assert "changed nothing although messages 1-2 carry information" in runs[0].error
    assert "python, nginx and postgres are installed" in runs[0].error and "(1 of 2)" in runs[0].error
    # Each run was shown the same messages again; after the bound the unchanged answer stands (no stuck session).
    assert [[seq for seq, _, _ in parse_prompt(r)[1]] for r in fake_model.requests] == [[1, 2]] * 3
    assert runs[2].status == "succeeded" and "accepted after 2 runs" in runs[2].error
    assert session.cursor_seq == 2


def test_an_unchanged_answer_to_small_talk_simply_moves_on(fake_model, extract):
    session = make_session(mode="summary", content={"summary": "Setting up a server."})
    post(session, ("user", "ok thanks!"), ("assistant", "You're welcome."))
    fake_model.push(answer({"summary": "Setting up a server."}))

    run = extract(session)

    assert (run.status, run.error, session.cursor_seq) == ("succeeded", "", 2)


@pytest.mark.parametrize("way", ["json_schema", "json_object", "tools"])
def test_each_structured_output_way_works_against_a_server_that_refuses_the_others(settings, way):
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(formats=frozenset({way})) as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = f"only-{way}", fake.url, 5.0
        settings.SESSIONCTX_STRUCTURED_OUTPUT = way
        session = make_session(mode="planning")
        _turn(session)
        run = extraction_run_now(session=session, trigger="test")
        (request,) = fake.requests

    assert run.status == "succeeded", run.error
    session.refresh_from_db()
    assert session.summary == "m1 m2"
    if way == "json_object":  # only "some JSON" is enforced: the schema is in the instructions
        assert '"required": ["summary", "goal", "plan", "progress"]' in request["messages"][0]["content"]


def test_auto_falls_back_once_to_a_way_the_server_takes_and_remembers_it(settings):
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(formats=frozenset({"json_object"})) as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = "auto-model", fake.url, 5.0
        settings.SESSIONCTX_STRUCTURED_OUTPUT = "auto"
        session = make_session(mode="summary")
        _turn(session)
        first = extraction_run_now(session=session, trigger="test")
        post(session, ("user", "The DNS points at the box now, propagation done"), ("assistant", "Then deploy."))
        second = extraction_run_now(session=session, trigger="test")
        ways = ["tools" if r.get("tools") else r["response_format"]["type"] for r in fake.requests]

    assert (first.status, second.status) == ("succeeded", "succeeded"), (first.error, second.error)
    assert ways == ["json_schema", "tools", "json_object", "json_object"]
    assert (first.model_calls, second.model_calls) == (3, 1)


def test_auto_moving_to_a_way_the_server_takes_is_not_a_retry_of_a_transient_error(settings):
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(formats=frozenset({"json_object"})) as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = "no-retries", fake.url, 5.0
        settings.SESSIONCTX_STRUCTURED_OUTPUT = "auto"
        settings.SESSIONCTX_MODEL_RETRIES = 0  # fail fast on a 429 or 5xx: not on a server's "not supported"
        session = make_session(mode="summary")
        _turn(session)
        run = extraction_run_now(session=session, trigger="test")
        ways = ["tools" if r.get("tools") else r["response_format"]["type"] for r in fake.requests]

    assert run.status == "succeeded", run.error
    assert ways == ["json_schema", "tools", "json_object"] and run.model_calls == 3
    session.refresh_from_db()
    assert (session.summary, session.cursor_seq) == ("m1 m2", 2)


def test_a_way_the_server_refuses_fails_the_run_saying_so(settings):
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(formats=frozenset({"tools"})) as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = "tools-only", fake.url, 5.0
        settings.SESSIONCTX_STRUCTURED_OUTPUT = "json_schema"
        session = make_session(mode="summary")
        _turn(session)
        run = extraction_run_now(session=session, trigger="test")
        sent = len(fake.requests)

    assert (run.status, sent) == ("failed", 1)
    assert "'json_schema' is not supported" in run.error


PLANNED = {"summary": "Ana is moving her blog from WordPress to Hugo; posts exported, conversion next. " * 3,
           "goal": "Move the blog to Hugo", "plan": ["Export posts", "Convert to Markdown", "Deploy to Netlify"],
           "progress": ["Export posts"]}


def test_a_schema_valid_but_implausible_answer_is_sent_back_once_with_the_reason(fake_model, extract):
    session = make_session(mode="planning", content=PLANNED)
    post(session, ("user", "Converted everything to Markdown with the exporter."), ("assistant", "Nice work."))
    fake_model.push(answer({**PLANNED, "progress": ["Export posts", "Converted everything to Markdown with the "
                                                    "exporter."]}),
                    answer({**PLANNED, "progress": ["Export posts", "Convert to Markdown"]}))

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert session.progress == ["Export posts", "Convert to Markdown"]
    assert len(fake_model.requests) == 2
    assert "progress holds steps that are not in the plan" in fake_model.requests[1]["messages"][-1]["content"]


def test_an_emptied_plan_goal_or_summary_is_refused_unless_the_messages_ask_for_it(fake_model, extract):
    session = make_session(mode="planning", content=PLANNED)
    _turn(session)
    emptied = {"summary": "Server.", "goal": "", "plan": [], "progress": []}
    fake_model.push(answer(emptied), answer(emptied))

    run = extract(session)

    assert run.status == "failed"
    for reason in ("the plan was emptied", "the goal was emptied", "the summary shrank"):
        assert reason in run.error
    assert (session.plan, session.cursor_seq) == (PLANNED["plan"], 0)

    post(session, ("user", "Forget all that, let's start over from scratch."), ("assistant", "Sure, a clean slate."))
    fake_model.push(answer(emptied))
    run = extract(session)
    assert run.status == "succeeded", run.error
    assert (session.plan, session.goal, session.cursor_seq) == ([], "", 4)


def test_an_answer_given_as_content_parts_is_read_as_its_text(fake_model, extract):
    # Some OpenAI-compatible servers and gateways answer message.content as a list of parts, not a string.
    session = make_session("parts-answer", mode="summary")
    post(session, ("user", "The shop database moves from MySQL to PostgreSQL."), ("assistant", "Noted."))
    fake_model.push(Reply(body={
        "id": "x", "object": "chat.completion", "created": int(time.time()), "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": [
            {"type": "text", "text": '{"summary": "The shop database moves '},
            {"type": "text", "text": 'from MySQL to PostgreSQL."}'}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}))

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert session.summary == "The shop database moves from MySQL to PostgreSQL."
    assert (run.model_calls, run.prompt_tokens, run.completion_tokens) == (1, 100, 20)
