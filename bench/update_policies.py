"""Update policies side by side (#18.5): the same labelled conversations replayed under each policy, in-process
with the offline extractor (deterministic, no model to wait for), on a throwaway SQLite database.

Per policy: runs (= model calls a model-backed installation would make), the characters of their prompts (previous
snapshot + unseen messages, what a model would be sent), and the final snapshot's scores (eval_extraction's goal,
plan F1, progress F1, summary key-fact recall). The conversations carry no timing, so they are posted back to
back: `idle:S` sees one quiet period, after the last turn, where the sweep queues its update. Every policy ends
with what an agent's `?fresh=true` read would do: one run for messages still unseen, counted in its figures.

    .venv/bin/python bench/update_policies.py                     the longest labelled conversation, then all
    .venv/bin/python bench/update_policies.py --only auth_service_long
    .venv/bin/python bench/update_policies.py --fake-model         the model path (tests/fake_openai.py): real
                                                                   prompt sizes and calls; scores not meaningful
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICIES = ["every_turn", "every_n_turns:3", "every_n_turns:5", "tokens:600", "tokens:1500", "tokens:3000", "idle:60"]


def setup(model_url: str | None) -> None:
    db = Path(tempfile.mkdtemp(prefix="bench-policies-")) / "db.sqlite3"
    if model_url:
        os.environ.update({"SESSIONCTX_MODEL": "fake-model", "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": model_url})
    os.environ.update({"DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": "bench-only-insecure-key", "DEBUG": "false",
                       "ALLOWED_HOSTS": "localhost", "DJANGO_SETTINGS_MODULE": "sessionctx.settings",
                       "LOG_LEVEL": "WARNING", "SESSIONCTX_INPROCESS_WORKERS": "0", "SESSIONCTX_AUTO_UPDATE": "true"})
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("CACHE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def replay(conversation: dict, policy: str, extractor) -> tuple[object, int, int]:
    """(score, runs, prompt characters) of one conversation under one policy; nothing is left behind."""
    import uuid

    from django.db import transaction
    from django.utils import timezone

    from contexts import services
    from contexts.extraction import evaluation
    from contexts.extraction.apply import extraction_run
    from contexts.extraction.policy import context_refresh, idle_sweep
    from contexts.models import ExtractionRun, SessionContext

    session_id = f"bench-{uuid.uuid4().hex[:10]}"

    def drain() -> None:
        while run := ExtractionRun.objects.filter(session__session_id=session_id,
                                                  status=ExtractionRun.Status.QUEUED).order_by("created_at").first():
            extraction_run(run_id=str(run.pk), extractor=extractor)

    result = {}
    try:
        with transaction.atomic():
            services.session_get_or_create(session_id=session_id, mode=conversation["mode"], update_policy=policy)
            for batch in evaluation.turns(conversation["messages"]):
                services.messages_post(session_id=session_id, messages=batch)
                drain()  # a worker would, between turns
            idle_sweep(now=timezone.now() + timedelta(days=1))  # the quiet period after the last turn
            drain()
            # An agent's fresh read at the end queues a run for what is still unseen; drain() does it here.
            session = SessionContext.objects.get(session_id=session_id)
            if session.has_unseen_messages:
                context_refresh(session=session, wait=0)
                drain()
            runs = ExtractionRun.objects.filter(session__session_id=session_id)
            result = {"snapshot": SessionContext.objects.get(session_id=session_id).snapshot(),
                      "runs": sum(max(r.model_calls, 1) for r in runs), "chars": sum(r.prompt_chars for r in runs)}
            raise evaluation._Rollback
    except evaluation._Rollback:
        pass
    return evaluation.Score(conversation, result["snapshot"]), result["runs"], result["chars"]


def table(conversations: list[dict], extractor, title: str) -> None:
    from contexts.extraction.evaluation import _mean

    print(f"\n{title} ({len(conversations)} conversations, "
          f"{sum(len(c['messages']) for c in conversations)} messages)")
    print(f"{'policy':<18}{'runs':>6}{'prompt chars':>14}{'× every_turn':>14}"
          f"{'goal':>7}{'plan':>7}{'progress':>9}{'facts':>7}")
    base = None
    for policy in POLICIES:
        rows = [replay(c, policy, extractor) for c in conversations]
        runs = sum(r[1] for r in rows)
        chars = sum(r[2] for r in rows)
        base = base or chars
        scores = [r[0] for r in rows]

        def fmt(v):
            return "   -" if v is None else f"{v:.2f}"

        print(f"{policy:<18}{runs:>6}{chars:>14,}{chars / base:>14.2f}{fmt(_mean(s.goal for s in scores)):>7}"
              f"{fmt(_mean(s.plan for s in scores)):>7}{fmt(_mean(s.progress for s in scores)):>9}"
              f"{fmt(_mean(s.facts for s in scores)):>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one conversation id (default: the longest, then the whole set)")
    parser.add_argument("--fake-model", action="store_true",
                        help="the model path against tests/fake_openai.py (real prompt sizes; its scores mean nothing)")
    args = parser.parse_args()
    if args.fake_model:
        from bench.extraction_common import bounded_model
        from tests.fake_openai import FakeOpenAI

        with FakeOpenAI(default=bounded_model()) as fake:
            setup(fake.url)
            run(args, extractor=None)
            print(f"model requests seen by the fake server: {len(fake.requests)}")
        return
    setup(None)
    from contexts.extraction.extractors.offline import OfflineExtractor

    run(args, extractor=OfflineExtractor())


def run(args, extractor) -> None:
    from contexts.extraction import evaluation

    conversations = evaluation.load(ROOT / "tests" / "data" / "conversations")
    if args.only:
        table([c for c in conversations if c["id"] == args.only], extractor, args.only)
        return
    longest = max(conversations, key=lambda c: len(c["messages"]))
    table([longest], extractor, f"longest: {longest['id']}")
    table(conversations, extractor, "whole labelled set")


if __name__ == "__main__":
    main()
