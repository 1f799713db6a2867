"""Scoring an extractor on labelled conversations (tests/data/conversations, format in its README.md).

Each conversation is replayed turn by turn through the real path (messages_post, then the queued runs done
in this process by extraction_run, follow-ups included) inside a transaction that is rolled back, under a
session id nobody else uses: nothing stays in the database and nothing reaches the broker or a webhook,
since on-commit callbacks never run. The final snapshot is scored against the labels.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from ..models import ExtractionRun, SessionContext
from ..services.messages import messages_post
from .apply import extraction_run
from .extractors.base import Extractor
from .runs import extraction_request

# A goal counts as right when its token F1 with the label reaches this (or they match once normalised).
GOAL_F1 = 0.5
# A predicted step matches a labelled one when their token F1 reaches this.
STEP_F1 = 0.6
SPLITS = ("dev", "held-out", "all")
# The overall figures a run can be required to reach (eval_extraction --min).
THRESHOLDS = ("goal", "plan_f1", "progress_f1", "fact_recall")

# Words that carry no content in a goal or a step, in the languages of the labelled set (normalised).
_STOP = frozenset(re.findall(r"\S+", """
a an the to of for and or in on at by with from into my our your this that it is are be i we you me us do can
would could should how please help want need like d m s ll ve re will get going so just also about as its
el la los las un una unos unas de del al y o en con por para mi mis tu su sus que es quiero necesito me nos lo
der die das den dem des ein eine einen einem einer und oder in im mit von zu zum zur fur auf ich wir mein meine
ist sind mochte will muss bitte uns
le la les un une des du de et ou en dans avec pour sur je nous mon ma mes est sont veux voudrais dois aider au aux
"""))


def normalise(text: str) -> str:
    """Casefolded, accents and punctuation removed, spaces collapsed."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.findall(r"[a-z0-9]+", text))


def _tokens(text: str) -> set[str]:
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in normalise(text).split() if w not in _STOP}


def token_f1(a: str, b: str) -> float:
    """Token F1 between two phrasings (stop words out, a plural s dropped)."""
    wa, wb = _tokens(a), _tokens(b)
    common = len(wa & wb)
    if not common:
        return 0.0
    precision, recall = common / len(wa), common / len(wb)
    return 2 * precision * recall / (precision + recall)


def goal_correct(predicted: str, expected: str) -> bool:
    if not expected.strip():
        return not predicted.strip()
    return normalise(predicted) == normalise(expected) or token_f1(predicted, expected) >= GOAL_F1


def steps_f1(predicted: list[str], expected: list[str]) -> float:
    """F1 of a one-to-one matching of steps (greedy, best pairs first); two empty lists agree fully."""
    if not predicted and not expected:
        return 1.0
    pairs = sorted(((token_f1(p, e), i, j) for i, p in enumerate(predicted) for j, e in enumerate(expected)),
                   reverse=True)
    used_p: set[int] = set()
    used_e: set[int] = set()
    matched = 0
    for score, i, j in pairs:
        if score < STEP_F1:
            break
        if i not in used_p and j not in used_e:
            used_p.add(i)
            used_e.add(j)
            matched += 1
    if not matched:
        return 0.0
    precision, recall = matched / len(predicted), matched / len(expected)
    return 2 * precision * recall / (precision + recall)


def fact_recall(summary: str, facts: list[str]) -> float:
    """Share of key facts found in the summary (normalised substring; "a|b" accepts either)."""
    if not facts:
        return 1.0
    text = f" {normalise(summary)} "
    found = sum(any(f" {normalise(alt)} " in text for alt in fact.split("|")) for fact in facts)
    return found / len(facts)


def split_of(path: Path, label: dict[str, Any]) -> str:
    """dev or held-out: a label's own `split`, else by the first hex digit of the SHA-256 of the file's stem."""
    if label.get("split") in ("dev", "held-out"):
        return label["split"]
    return "dev" if hashlib.sha256(path.stem.encode()).hexdigest()[0] in "01234567" else "held-out"


def load(directory: Path, split: str = "all") -> list[dict[str, Any]]:
    conversations = []
    for path in sorted(directory.glob("*.json")):
        label = json.loads(path.read_text(encoding="utf-8"))
        label["split"] = split_of(path, label)
        label.setdefault("id", path.stem)
        label.setdefault("language", "en")
        if split in ("all", label["split"]):
            conversations.append(label)
    return conversations


def turns(messages: list[dict[str, str]]) -> Iterable[list[dict[str, str]]]:
    """Batches as an agent posts them: each ends with the assistant's reply (a trailing user message alone)."""
    batch: list[dict[str, str]] = []
    for m in messages:
        batch.append({"role": m["role"], "content": m["content"]})
        if m["role"] == "assistant":
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Update:
    """One run, as the harness saw it."""

    status: str
    prompt_tokens: int
    completion_tokens: int
    prompt_chars: int
    seconds: float
    error: str = ""


@dataclass
class Score:
    conversation: dict[str, Any]
    snapshot: dict[str, Any]
    updates: list[Update] = field(default_factory=list)

    @property
    def planning(self) -> bool:
        return self.conversation["mode"] == "planning"

    @property
    def expected(self) -> dict[str, Any]:
        return self.conversation["expected"]

    @property
    def goal(self) -> float | None:
        return float(goal_correct(self.snapshot["goal"], self.expected["goal"])) if self.planning else None

    @property
    def plan(self) -> float | None:
        return steps_f1(self.snapshot["plan"], self.expected["plan"]) if self.planning else None

    @property
    def progress(self) -> float | None:
        return steps_f1(self.snapshot["progress"], self.expected["progress"]) if self.planning else None

    @property
    def facts(self) -> float:
        return fact_recall(self.snapshot["summary"], self.expected.get("summary_mentions", []))

    @property
    def failed(self) -> int:
        return sum(u.status == ExtractionRun.Status.FAILED for u in self.updates)

    @property
    def no_change(self) -> int:
        """Runs whose answer was refused as ignoring informative messages (the model path)."""
        return sum(u.status == ExtractionRun.Status.NO_CHANGE for u in self.updates)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@dataclass
class Report:
    scores: list[Score]
    extractor: str

    def overall(self, scores: list[Score] | None = None) -> dict[str, Any]:
        scores = self.scores if scores is None else scores
        updates = [u for s in scores for u in s.updates]
        return {
            "conversations": len(scores),
            "goal": _mean(s.goal for s in scores),
            "plan_f1": _mean(s.plan for s in scores),
            "progress_f1": _mean(s.progress for s in scores),
            "fact_recall": _mean(s.facts for s in scores),
            "updates": len(updates),
            "failed_runs": sum(s.failed for s in scores),
            "no_change_runs": sum(s.no_change for s in scores),
            "tokens_in_per_update": _mean(u.prompt_tokens for u in updates),
            "tokens_out_per_update": _mean(u.completion_tokens for u in updates),
            "chars_in_per_update": _mean(u.prompt_chars for u in updates),
            "latency_ms_per_update": _mean(u.seconds * 1000 for u in updates),
            "latency_ms_max": max((u.seconds * 1000 for u in updates), default=None),
        }

    def groups(self) -> dict[str, dict[str, Any]]:
        """Overall figures for each split, mode and language present."""
        out = {}
        for key in ("split", "mode", "language"):
            for value in sorted({s.conversation[key] for s in self.scores}):
                out[f"{key} {value}"] = self.overall([s for s in self.scores if s.conversation[key] == value])
        return out

    def markdown(self) -> str:
        def fmt(value, digits=2):
            return "–" if value is None else f"{value:.{digits}f}"

        lines = [f"# Extraction evaluation: {self.extractor}", "",
                 f"Goal right when normalised equal or token F1 ≥ {GOAL_F1}; steps match at token F1 ≥ {STEP_F1}.",
                 "", "| | conversations | goal | plan F1 | progress F1 | key facts | updates | failed | "
                 "tokens in/update | tokens out/update | ms/update | no change |", "|---" * 12 + "|"]
        for name, o in [("**all**", self.overall()), *self.groups().items()]:
            lines.append(f"| {name} | {o['conversations']} | {fmt(o['goal'])} | {fmt(o['plan_f1'])} | "
                         f"{fmt(o['progress_f1'])} | {fmt(o['fact_recall'])} | {o['updates']} | {o['failed_runs']} | "
                         f"{fmt(o['tokens_in_per_update'], 0)} | {fmt(o['tokens_out_per_update'], 0)} | "
                         f"{fmt(o['latency_ms_per_update'], 0)} | {o['no_change_runs']} |")
        lines += ["", "| conversation | split | mode | lang | goal | plan F1 | progress F1 | key facts | updates | "
                  "failed |", "|---" * 10 + "|"]
        for s in self.scores:
            c = s.conversation
            lines.append(f"| {c['id']} | {c['split']} | {c['mode']} | {c['language']} | {fmt(s.goal, 0)} | "
                         f"{fmt(s.plan)} | {fmt(s.progress)} | {fmt(s.facts)} | {len(s.updates)} | {s.failed} |")
        return "\n".join(lines) + "\n"


class _Rollback(Exception):
    pass


def replay(conversation: dict[str, Any], *, extractor: Extractor) -> Score:
    """Replay one conversation turn by turn, score its final snapshot, and leave nothing behind."""
    session_id = f"eval-{uuid.uuid4().hex[:12]}-{conversation['id']}"[:200]
    updates: list[Update] = []
    snapshot: dict[str, Any] = {}
    try:
        with transaction.atomic():
            for batch in turns(conversation["messages"]):
                posted = messages_post(session_id=session_id, messages=batch, mode=conversation["mode"])
                extraction_request(session=posted.session, trigger="eval")  # even with SESSIONCTX_AUTO_UPDATE off
                # Queued runs (the follow-ups of a chunked update too) are done here, as a worker would.
                while run := (ExtractionRun.objects.filter(session=posted.session, status=ExtractionRun.Status.QUEUED)
                              .order_by("created_at").first()):
                    started = time.monotonic()
                    extraction_run(run_id=str(run.pk), extractor=extractor)
                    seconds = time.monotonic() - started
                    run.refresh_from_db()
                    updates.append(Update(run.status, run.prompt_tokens, run.completion_tokens, run.prompt_chars,
                                          seconds, run.error))
                    if run.status == ExtractionRun.Status.QUEUED:
                        break  # told to come back later: not in a replay with nobody else on the session
            snapshot = SessionContext.objects.get(session_id=session_id).snapshot()
            raise _Rollback
    except _Rollback:
        pass
    return Score(conversation, snapshot, updates)


def evaluate(conversations: list[dict[str, Any]], *, extractor: Extractor,
             progress: Callable[[Iterable[dict[str, Any]]], Iterable[dict[str, Any]]] = iter) -> Report:
    return Report([replay(c, extractor=extractor) for c in progress(conversations)],
                  extractor=f"{extractor.name} ({extractor.model})")
