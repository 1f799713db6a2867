"""What the model is shown: the previous snapshot, each unseen message exactly once, within the budget."""

from __future__ import annotations

import re

import pytest

from contexts.models import ExtractionRun
from tests.extraction.conftest import post
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def _prompt_chars(request) -> int:
    return sum(len(m["content"]) for m in request["messages"])


def test_prompt_holds_the_previous_snapshot(fake_model, extract):
    session = make_session(mode="planning", content={
        "summary": "Lena is planning a 3-day Lisbon trip in May.", "goal": "Plan a Lisbon trip",
        "plan": ["Book flights", "Pick a hotel in Alfama"], "progress": ["Book flights"]})
    post(session, ("user", "Flights are booked, what about hotels?"), ("assistant", "Try Memmo Alfama."))

    assert extract(session).status == "succeeded"

    prompt = fake_model.prompts()[0]
    for fragment in ("Lena is planning a 3-day Lisbon trip in May.", "Plan a Lisbon trip", "Pick a hotel in Alfama",
                     "Book flights"):
        assert fragment in prompt
    assert "Flights are booked, what about hotels?" in prompt and "Try Memmo Alfama." in prompt


def test_every_message_appears_in_exactly_one_prompt_across_runs(fake_model, extract, settings):
    settings.SESSIONCTX_PROMPT_BUDGET_CHARS = 4000
    session = make_session(mode="summary")
    n = 0
    for batch in (2, 4, 1, 12, 3):  # the 12-message batch needs several chunks
        messages = []
        for _ in range(batch):
            n += 1
            messages.append(("user" if n % 2 else "assistant", f"marker-{n:03d} " + "words " * 60))
        post(session, *messages)
        run = extract(session)
        assert run.status == "succeeded", run.error

    prompts = fake_model.prompts()
    assert len(prompts) > 5  # chunking split at least one run
    for i in range(1, n + 1):
        assert sum(p.count(f"marker-{i:03d}") for p in prompts) == 1, f"marker-{i:03d}"
    # The fake model's ledger: every message consumed once, in order.
    session.refresh_from_db()
    assert session.summary.split() == [f"m{i}" for i in range(1, n + 1)]
    assert session.cursor_seq == n


def test_chunking_keeps_every_prompt_within_the_budget(fake_model, extract, settings):
    settings.SESSIONCTX_PROMPT_BUDGET_CHARS = 3000
    session = make_session(mode="planning", content={"summary": "A long support case.", "goal": "Fix the VPN"})
    post(session, *[("user" if i % 2 else "assistant", f"note {i}: " + "x" * 600) for i in range(1, 21)])

    run = extract(session)

    assert run.status == "succeeded", run.error
    assert run.chunks > 1
    assert max(_prompt_chars(r) for r in fake_model.requests) <= 3000
    consumed = sorted(int(s) for p in fake_model.prompts() for s in re.findall(r'<message seq="(\d+)"', p))
    assert consumed == list(range(1, 21))


def test_a_later_chunk_stays_within_the_budget_when_the_snapshot_grew_in_an_earlier_one(settings):
    """The operator sizes SESSIONCTX_PROMPT_BUDGET_CHARS to the model's context; the summary the first chunk wrote
    is in every later chunk's prompt."""
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI, answer, parse_prompt

    def writes_a_long_summary(request):
        previous, messages = parse_prompt(request)
        ledger = previous["summary"].split("|")[0].split() + [f"m{seq}" for seq, _, _ in messages]
        return answer({"summary": (" ".join(ledger) + " |" + " facts" * 250)[:1100]})

    # 3,000 characters (750 tokens) and the 500 output tokens asked for fit; a longer prompt does not.
    with FakeOpenAI(writes_a_long_summary, context_tokens=1260) as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = "small-ctx", fake.url, 5.0
        settings.SESSIONCTX_PROMPT_BUDGET_CHARS = 3000
        settings.SESSIONCTX_MAX_CHUNKS_PER_RUN = 20
        session = make_session(mode="summary")
        post(session, *[("user" if i % 2 else "assistant", f"note {i}: " + "x" * 600) for i in range(1, 9)])
        run = extraction_run_now(session=session, trigger="test")
        sizes = [_prompt_chars(r) for r in fake.requests]

    assert run.status == "succeeded", run.error
    assert max(sizes) <= 3000, sizes
    session.refresh_from_db()
    assert (session.cursor_seq, session.summary.split("|")[0].split()) == (8, [f"m{i}" for i in range(1, 9)])


def test_more_chunks_than_one_run_takes_go_to_a_follow_up_run(fake_model, extract, settings):
    settings.SESSIONCTX_PROMPT_BUDGET_CHARS = 2500
    settings.SESSIONCTX_MAX_CHUNKS_PER_RUN = 2
    session = make_session(mode="summary")
    post(session, *[("user", f"m{i} " + "y" * 900) for i in range(1, 9)])

    first = extract(session)

    runs = list(ExtractionRun.objects.filter(session=session).order_by("created_at"))
    assert [r.status for r in runs] == ["succeeded"] * len(runs) and len(runs) >= 2
    assert first.chunks == 2 and runs[1].trigger == "follow-up"
    assert [(r.first_seq, r.last_seq) for r in runs][0][0] == 1 and runs[-1].last_seq == 8
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.first_seq == earlier.last_seq + 1 and later.from_version == earlier.to_version
    session.refresh_from_db()
    assert session.cursor_seq == 8 and session.summary.split() == [f"m{i}" for i in range(1, 9)]


def _chunked_by(fake, settings) -> None:
    """The model at `fake`, with a prompt budget that cuts eight messages of 900 characters into chunks."""
    settings.SESSIONCTX_MODEL, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT = "flaky", fake.url, 5.0
    settings.SESSIONCTX_PROMPT_BUDGET_CHARS = 2500
    settings.SESSIONCTX_MAX_CHUNKS_PER_RUN = 5


def _seqs(prompt: str) -> list[int]:
    """The seq of each message a prompt shows."""
    return [int(s) for s in re.findall(r'<message seq="(\d+)"', prompt)]


def test_a_later_chunk_that_fails_keeps_what_the_earlier_chunks_paid_for(settings):
    """A model that answers the first chunk and fails the second: the first chunk's snapshot is written and its
    messages consumed (they were paid for), the failed ones stay unseen for a follow-up run."""
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI, echo_extraction, error

    seen = []

    def second_call_fails(request):
        seen.append(request)
        return error(400, "the model refused this request") if len(seen) == 2 else echo_extraction(request)

    with FakeOpenAI(second_call_fails) as fake:
        _chunked_by(fake, settings)
        session = make_session(mode="summary")
        post(session, *[("user", f"m{i} " + "y" * 900) for i in range(1, 9)])
        run = extraction_run_now(session=session, trigger="test")
        first_chunk = _seqs(fake.prompts()[0])
        failed_chunk = _seqs(fake.prompts()[1])

    assert len(seen) == 2 and first_chunk[0] == 1 and failed_chunk[0] == first_chunk[-1] + 1
    assert run.status == "succeeded", run.error
    assert (run.first_seq, run.last_seq, run.chunks) == (1, first_chunk[-1], 2)
    assert f"Messages {failed_chunk[0]}-{failed_chunk[-1]} not taken in" in run.error
    assert "the model refused this request" in run.error
    session.refresh_from_db()
    assert session.cursor_seq == first_chunk[-1]
    assert session.summary.split() == [f"m{i}" for i in first_chunk]
    follow_up = ExtractionRun.objects.get(session=session, trigger="follow-up")
    assert follow_up.status == "queued"


def test_a_later_chunk_that_fails_after_one_that_changed_nothing_is_named_on_the_run(settings):
    from contexts.extraction.apply import extraction_run_now
    from tests.fake_openai import FakeOpenAI, answer, error

    def second_call_fails(request):
        second_call_fails.calls += 1
        if second_call_fails.calls % 2 == 0:  # each run's second chunk
            return error(400, "the model refused this request")
        return answer({"summary": ""})

    second_call_fails.calls = 0
    with FakeOpenAI(second_call_fails) as fake:
        _chunked_by(fake, settings)
        settings.SESSIONCTX_UNCHANGED_RETRIES = 1
        session = make_session(mode="summary")
        post(session, *[("user", f"Order {i} arrived broken yesterday " + "y" * 900) for i in range(1, 9)])
        run = extraction_run_now(session=session, trigger="test")
        failed_chunk = _seqs(fake.prompts()[1])
        accepted = extraction_run_now(session=session, trigger="test")  # the same answer, taken this time

    # The first chunk's answer changed nothing: the run is no_change, and says why the rest was not read.
    assert run.status == "no_change" and second_call_fails.calls == 4
    said = f"Messages {failed_chunk[0]}-{failed_chunk[-1]} not taken in"
    assert said in run.error and "the model refused this request" in run.error
    # Once that answer is accepted, the run's note still names the chunk that failed.
    assert accepted.status == "succeeded", accepted.error
    assert said in accepted.error and "accepted after 1 runs" in accepted.error
    session.refresh_from_db()
    assert session.cursor_seq == failed_chunk[0] - 1


def test_one_huge_message_is_truncated_with_a_marker_not_sent_over_budget(fake_model, extract, settings):
    settings.SESSIONCTX_PROMPT_BUDGET_CHARS = 3000
    session = make_session(mode="summary")
    post(session, ("user", "START " + "z" * 20_000 + " END"), ("assistant", "That is a big log file."))

    run = extract(session)

    assert run.status == "succeeded", run.error
    prompt = fake_model.prompts()[0]
    assert _prompt_chars(fake_model.requests[0]) <= 3000
    assert "characters omitted to fit the prompt budget" in prompt
    assert "START" in prompt and "END" in prompt
    assert session.cursor_seq == 2
