"""The offline extractor on labelled conversations (tests/data/conversations): report and bound its accuracy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from contexts.models import ExtractionRun
from tests.extraction.conftest import post
from tests.factories import make_session

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[1] / "data" / "conversations"
CONVERSATIONS = [json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))]
_STOP = {"a", "an", "the", "to", "of", "for", "and", "or", "in", "on", "at", "with", "my", "our", "your", "i",
         "we", "it", "is", "be", "by", "from", "this", "that", "want", "need", "like", "d", "m", "can", "you",
         "help", "me", "please", "would", "how", "do"}


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def similar(a: str, b: str) -> float:
    """Token F1 between two phrasings."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    common = len(wa & wb)
    if not common:
        return 0.0
    precision, recall = common / len(wa), common / len(wb)
    return 2 * precision * recall / (precision + recall)


def same_steps(predicted: list[str], expected: list[str]) -> bool:
    return len(predicted) == len(expected) and all(similar(p, e) >= 0.6 for p, e in zip(predicted, expected,
                                                                                         strict=True))


def same_set(predicted: list[str], expected: list[str]) -> bool:
    if len(predicted) != len(expected):
        return False
    return all(any(similar(p, e) >= 0.6 for p in predicted) for e in expected)


def _turns(messages):
    """Batches as an agent posts them: each ends with the assistant's reply (a trailing user message alone)."""
    batch = []
    for m in messages:
        batch.append((m["role"], m["content"]))
        if m["role"] == "assistant":
            yield batch
            batch = []
    if batch:
        yield batch


def test_the_labelled_set_is_big_and_varied_enough():
    modes = {c["mode"] for c in CONVERSATIONS}
    domains = {c["domain"] for c in CONVERSATIONS}
    assert len(CONVERSATIONS) >= 15 and modes == {"summary", "planning"} and len(domains) >= 8
    # Plans that change midway: a second full list from the assistant.
    changing = [c for c in CONVERSATIONS if sum("\n1. " in m["content"] for m in c["messages"]
                                                 if m["role"] == "assistant") >= 2]
    assert len(changing) >= 4


def test_offline_extractor_accuracy_on_goal_plan_progress_and_summary(extract, capsys):
    scores = {"goal": [], "plan": [], "progress": [], "summary": []}
    rows = []
    for conversation in CONVERSATIONS:
        session = make_session(f"acc-{conversation['id']}", mode=conversation["mode"])
        for batch in _turns(conversation["messages"]):
            post(session, *batch)
            run = extract(session)
            assert run.status == ExtractionRun.Status.SUCCEEDED and run.extractor == "offline", run.error
        expected = conversation["expected"]
        assert len(session.summary) <= settings.SESSIONCTX_SUMMARY_CHARS
        mentions = expected.get("summary_mentions", [])
        found = sum(m.lower() in session.summary.lower() for m in mentions) / len(mentions)
        scores["summary"].append(found)
        row = [conversation["id"], f"summary {found:.0%}"]
        if conversation["mode"] == "planning":
            goal = similar(session.goal, expected["goal"]) >= 0.5
            plan = same_steps(session.plan, expected["plan"])
            progress = same_set(session.progress, expected["progress"])
            scores["goal"].append(goal)
            scores["plan"].append(plan)
            scores["progress"].append(progress)
            row += [f"goal {'ok' if goal else 'MISS'}", f"plan {'ok' if plan else 'MISS'}",
                    f"progress {'ok' if progress else 'MISS'} ({len(session.progress)}/{len(expected['progress'])})"]
        rows.append("  ".join(row))
    accuracy = {name: sum(values) / len(values) for name, values in scores.items()}
    with capsys.disabled():
        print("\nOffline extractor on", len(CONVERSATIONS), "labelled conversations:")
        print("\n".join("  " + r for r in rows))
        print("  accuracy: " + ", ".join(f"{k} {v:.0%}" for k, v in accuracy.items()))
    # Bounds a little under what was measured (goal 92%, plan 100%, progress 85%, summary 84%). The rules
    # were written while looking at this set, so these are optimistic for unseen conversations.
    assert accuracy["goal"] >= 0.8
    assert accuracy["plan"] >= 0.9
    assert accuracy["progress"] >= 0.75
    assert accuracy["summary"] >= 0.7
