"""The offline extractor: deterministic rules, no network. The default when no model is configured.

Rules for English, Spanish, German and French; tuned on the dev half of tests/data/conversations only.

- goal: the first user message that says what they want (greetings, "can you help me?" and other
  content-free sentences left out); later questions and meta-remarks ("let's change the approach") never
  replace it. A change ("actually …", "instead of …", "en fait", "eigentlich", "en realidad") that talks
  about the goal more than about a plan step replaces it with the new content, the earlier goal kept after it;
- plan: the latest numbered (or, in a reply that talks about steps/plans, bulleted) list of at least
  two items in an assistant reply;
- progress: steps the user reports done in any words ("that part's sorted", "✅ step 3", a past tense, "ya
  está", "ist erledigt", "c'est fait") or the assistant confirms, matched to plan steps by number or by
  words; a step reported undone ("rolled back", "had to pull them off again") leaves progress;
- summary: who said what, extractive: the informative sentences of every turn (names, numbers, dates,
  decisions score highest, the user's own sentences count double); past the bound the least informative lose
  their asides first and then go, the opening request stays.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from ...containment import OVERRIDE
from ..base import Deadline, ExtractionResult, Extractor, PromptMessage, Usage
from .goal import changed_goal, goal_from
from .plan import carried, plan_from, replaces
from .progress import focus_step, progress_from
from .summary import bound_summary, parse_summary, summary_units


def _without_overrides(text: str) -> str:
    """The message without its sentences that give instructions to the extractor (containment.py): they are
    neither a goal nor a fact worth keeping in a summary that agents put in their prompts."""
    if not OVERRIDE.search(text):
        return text
    return "\n".join(" ".join(s for s in re.split(r"(?<=[.!?])\s+", line) if not OVERRIDE.search(s))
                     for line in text.splitlines())


class OfflineExtractor(Extractor):
    name = "offline"
    model = "offline"

    def extract(self, *, previous: dict[str, Any], mode: str, messages: list[PromptMessage],
                deadline: Deadline | None = None) -> ExtractionResult:
        goal = previous.get("goal", "") or ""
        plan = list(previous.get("plan", []) or [])
        progress = list(previous.get("progress", []) or [])
        summary = parse_summary(previous.get("summary", "") or "")
        for message in messages:
            text = _without_overrides(message.content)
            if message.role == "user":
                # The first message that says what the user wants sets the goal; later ones only change it.
                goal = (changed_goal(text, goal, plan) or goal) if goal else (goal_from(text) or "")
            proposed: list[str] | None = None
            if message.role == "assistant":
                new_plan = plan_from(text)
                if new_plan and new_plan != plan and replaces(text, new_plan, plan):
                    progress = carried(progress, new_plan)
                    plan = proposed = new_plan
            # A reply that lays out a plan does not report its steps done ("the timings are fixed by the venue").
            if message.role in ("user", "assistant") and plan and not proposed:
                focus = focus_step(summary, plan, progress) if message.role == "user" else None
                done, undone = progress_from(text, message.role, plan, progress, focus)
                progress = [step for step in progress if step not in undone]
                progress += [step for step in dict.fromkeys(done) if step not in progress and step not in undone]
            if message.role in ("user", "assistant"):
                if proposed:  # a revised plan replaces the one proposed before
                    summary = [u for u in summary if u[0] != "Plan"]
                summary += summary_units(text, message.role, proposed)
        snapshot: dict[str, Any] = {"summary": bound_summary(summary, settings.SESSIONCTX_SUMMARY_CHARS)}
        if mode == "planning":
            snapshot.update(goal=goal, plan=plan, progress=progress)
        return ExtractionResult(snapshot=snapshot, usage=Usage(prompt_chars=sum(len(m.content) for m in messages)))
