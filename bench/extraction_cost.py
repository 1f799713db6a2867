"""Prompt size per extraction along one 200-turn conversation (posted through the API, fake model).

The prompt holds the previous snapshot and only the unseen messages, so it stays flat while a
full-history prompt grows with the conversation. Target: prompt at turn 200 / turn 5 <= 1.3.

What still grows is the summary, from nothing to the size extraction keeps it to (SESSIONCTX_SUMMARY_CHARS),
so the same conversation runs twice in one run: with that setting as configured, and with it raised to the
hard bound (SESSIONCTX_MAX_SUMMARY_CHARS), to show how much of the ratio the summary's size decides. The
fake model keeps the summary to the size its instructions ask for, as a good model does.

    .venv/bin/python bench/extraction_cost.py      (PostgreSQL: BENCH_DATABASE_URL, default sessionctx_bench)
"""

from __future__ import annotations

import random
import uuid

from extraction_common import bounded_model, setup_django

TURNS = 200
CHECKPOINTS = (5, 50, 100, 200)
TOPICS = ["the database migration", "the deploy pipeline", "the billing export", "the search index",
          "the onboarding emails", "the mobile login bug", "the nightly backups", "the CSV importer"]


def user_message(rng: random.Random, turn: int) -> str:
    topic = rng.choice(TOPICS)
    return (f"Turn {turn}: I looked at {topic} again. It still fails when the input has more than "
            f"{rng.randint(100, 9000)} rows, and the logs show a timeout after {rng.randint(5, 90)} seconds. "
            "What should I check next, and is there anything I should change in the configuration first?")


def assistant_message(rng: random.Random, turn: int) -> str:
    topic = rng.choice(TOPICS)
    return (f"For {topic}, first check whether the worker runs out of memory: watch RSS while it processes "
            f"a batch of {rng.randint(50, 500)} rows. If memory is fine, raise the statement timeout to "
            f"{rng.randint(30, 120)} seconds and add an index on the lookup column. Then re-run the job with "
            "verbose logging and send me the last 50 lines, so we can see where it stalls. Keep the batch size "
            "small until we know more; large batches make the lock waits worse.")


def conversation(client, label: str) -> list[tuple[int, int, int, int]]:
    """Post the 200 turns to a new planning session; (turn, prompt chars, tokens, full-history chars) rows."""
    from contexts.extraction.extractors.instructions import instructions
    from contexts.models import ExtractionRun, SessionContext

    session_id = f"bench-cost-{uuid.uuid4().hex[:8]}"
    rng = random.Random(42)
    history_chars = 0
    rows = []
    for turn in range(1, TURNS + 1):
        messages = [{"role": "user", "content": user_message(rng, turn)},
                    {"role": "assistant", "content": assistant_message(rng, turn)}]
        history_chars += sum(len(m["content"]) for m in messages)
        response = client.post(f"/api/v1/sessions/{session_id}/messages", content_type="application/json",
                               data={"mode": "planning", "messages": messages})
        assert response.status_code == 202, response.content
        run = ExtractionRun.objects.get(pk=response.json()["update"]["run_id"])
        assert run.status == "succeeded", (run.status, run.error)
        if turn in CHECKPOINTS:
            full = len(instructions("planning")) + history_chars
            rows.append((turn, run.prompt_chars, run.prompt_tokens, full))
    summary = SessionContext.objects.get(session_id=session_id).summary
    print(f"\n{label}: session {session_id}, final summary {len(summary)} characters")
    print(f"{'turn':>5} {'prompt chars':>13} {'prompt tokens':>14} {'full-history chars':>19}")
    for turn, chars, tokens, full in rows:
        print(f"{turn:>5} {chars:>13} {tokens:>14} {full:>19}")
    SessionContext.objects.filter(session_id=session_id).delete()
    return rows


def main() -> None:
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(default=bounded_model()) as fake:
        setup_django({"SESSIONCTX_MODEL": "fake-model", "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": fake.url,
                      "OPENAI_MAX_RETRIES": "0"})
        from django.conf import settings
        from django.test import Client, override_settings

        from contexts import services
        from contexts.extraction.extractors import get_extractor

        key, raw = services.api_key_create(name="bench", scopes=["read", "write"])
        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
        size, hard = settings.SESSIONCTX_SUMMARY_CHARS, settings.SESSIONCTX_MAX_SUMMARY_CHARS
        print(f"extractor: {get_extractor().name}, {TURNS} turns per conversation")
        rows = conversation(client, f"SESSIONCTX_SUMMARY_CHARS={size} (as configured)")
        with override_settings(SESSIONCTX_SUMMARY_CHARS=hard):
            grown = conversation(client, f"SESSIONCTX_SUMMARY_CHARS={hard} (the hard bound), for comparison")
        print()
        ratio = rows[-1][1] / rows[0][1]
        full_ratio = rows[-1][3] / rows[0][3]
        print(f"last/first prompt: {ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'}); "
              f"a full-history prompt would grow {full_ratio:.1f}x")
        print(f"turn 50 -> 200 (after the summary reached its size): {rows[-1][1] / rows[1][1]:.2f}")
        print(f"with the summary kept to {hard} characters instead: last/first {grown[-1][1] / grown[0][1]:.2f}, "
              f"turn 50 -> 200 {grown[-1][1] / grown[1][1]:.2f}; prompt at turn 200 "
              f"{grown[-1][1] / rows[-1][1]:.2f}x the configured one's")
        print(f"model requests: {len(fake.requests)}", flush=True)
        key.delete()


if __name__ == "__main__":
    main()
