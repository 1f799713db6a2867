"""The offline extractor: deterministic rules, no network. The default when no model is configured.

- goal: the user's request (the first message that asks for something; a later "actually, …
  instead" replaces it);
- plan: the latest numbered (or, in a reply that talks about steps/plans, bulleted) list of at least
  two items in an assistant reply;
- progress: steps the user reports done ("done with step 1", "finished the migration") or the
  assistant confirms ("step 2 is complete"), matched to plan steps by number or by words;
- summary: the request plus the first sentence of recent turns, bounded, oldest turns dropped first.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from .base import Deadline, ExtractionResult, Extractor, PromptMessage, Usage

_GREETING = re.compile(r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|thanks|thank you)\b[^,.!?\n]{0,20}[,.!]\s*",
                       re.IGNORECASE)
_REQUEST = re.compile(
    r"\b(i\s*(want|need|would like|'d like|am trying|'m trying|have to|must|wanna|plan)|help me|can you|could you|"
    r"would you|please|how (do|can|should) i|i'm looking|looking to|let's|we need|my goal|goal is|trying to|"
    r"i'?m planning|i am planning|where do i start)\b",
    re.IGNORECASE,
)
_CONSTRAINT = re.compile(r"\b(budget|deadline|due|must|has to|have to|needs to|within|by (monday|tuesday|"
                         r"wednesday|thursday|friday|saturday|sunday|the end))\b", re.IGNORECASE)
_GOAL_CHANGE = re.compile(r"\b(actually|instead|change of plans?|scratch that|new goal|forget (that|the)|"
                          r"changed my mind|rather than)\b", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:(?:step\s*)?(\d{1,2})[.):]|[-*•])\s+(.+?)\s*$", re.IGNORECASE)
_PLAN_CUE = re.compile(r"\b(plan|steps?|here'?s how|we'?ll|let'?s|approach|roadmap|first|then|next)\b", re.IGNORECASE)
_DONE = re.compile(r"\b(done|finished|completed?|did|wrapped up|ticked off|sorted|worked|works now|is working|"
                   r"are working|set up|installed|fixed|merged|deployed|sent|booked|submitted|passed|checked off)\b",
                   re.IGNORECASE)
# A user reporting an action in the past tense ("I exported everything", "beds are built").
_PAST = re.compile(r"\b([a-z]{3,}ed|built|bought|wrote|written|took|taken|made|got|went|ran|sent|set|put|did|paid|"
                   r"found|chose|picked|began|begun|drew|drawn)\b", re.IGNORECASE)
_NOT_DONE = re.compile(r"\b(not|n't|yet to|still need|haven't|hasn't|once|after you|when you|if you|before|"
                       r"will|going to|next|should|let me know|can't|cannot|failed|fails|error)\b", re.IGNORECASE)
_STEP_REF = re.compile(r"\bsteps?\s+(\d{1,2})(?:\s*(?:-|–|to|through)\s*(\d{1,2}))?((?:\s*(?:,|and|&)\s*\d{1,2})*)",
                       re.IGNORECASE)
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}
_ORDINAL_REF = re.compile(r"\b(" + "|".join(_ORDINALS) + r")\s+(?:step|one|item|task)\b", re.IGNORECASE)
_ALL_DONE = re.compile(r"\b(all|every)\s+(the\s+)?steps?\b.*\b(done|finished|complete)", re.IGNORECASE)
_STOP = frozenset(re.split(r"\s+", """a an the to of for and or in on at by with from into my our your this that it
is are be was were i
we you me us do did done finish finished finishing complete completed step steps now just also so then have has
had been all up out as its it's i've we've i'm please ok okay great thanks"""))
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_MARKDOWN = re.compile(r"[*_`#>]+")


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiousl":
        word = word[:-1]  # submitted -> submit
    return word[:-1] if len(word) > 3 and word.endswith("e") else word  # cache / caching -> cach


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in _words(text)}


def _clean(text: str) -> str:
    return " ".join(_MARKDOWN.sub("", text.replace("\u2019", "'")).split())


def _first_sentence(text: str, limit: int = 200) -> str:
    text = _clean(text)
    sentence = _SENTENCE.split(text, maxsplit=1)[0] if text else ""
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _goal_from(text: str) -> str | None:
    """The request in a user message, as one or two sentences."""
    text = _GREETING.sub("", _clean(text))
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    for i, sentence in enumerate(sentences):
        if _REQUEST.search(sentence):
            goal = sentence
            # "I need X. The deadline is Y." keeps the constraint that follows.
            following = sentences[i + 1] if i + 1 < len(sentences) else ""
            if len(goal) < 100 and _CONSTRAINT.search(following) and not following.rstrip().endswith("?"):
                goal += " " + following
            return goal.strip()[: settings.SESSIONCTX_MAX_GOAL_CHARS]
    return None


def _plan_from(text: str) -> list[str] | None:
    """The last list of two or more steps in an assistant reply, or None."""
    lists: list[tuple[bool, list[str]]] = []
    current: list[str] = []
    numbered = False
    for line in text.splitlines():
        match = _LIST_ITEM.match(line)
        if match:
            if not current:
                numbered = match.group(1) is not None
            current.append(match.group(2))
        elif line.strip() and current and line.startswith((" ", "\t")):
            continue  # an indented detail under an item
        elif line.strip() and current:
            lists.append((numbered, current))
            current = []
    if current:
        lists.append((numbered, current))
    cue = bool(_PLAN_CUE.search(text))
    candidates = [items for is_numbered, items in lists if len(items) >= 2 and (is_numbered or cue)]
    if not candidates:
        return None
    steps = []
    for item in max(candidates, key=len) if len(candidates) > 1 else candidates[0]:
        step = _clean(item)
        step = re.sub(r"^\s*step\s*\d+\s*[:.)-]\s*", "", step, flags=re.IGNORECASE)
        steps.append(step[: settings.SESSIONCTX_MAX_STEP_CHARS])
    return steps[: settings.SESSIONCTX_MAX_PLAN_STEPS]


def _clauses(text: str) -> list[str]:
    """Statements (questions left out), split where a sentence joins two ("…, so step 3 is done")."""
    clauses = []
    for sentence in re.findall(r"[^.!?\n]+[.!?]*", text):
        if sentence.strip().endswith("?"):
            continue
        parts = re.split(r";|\bbut\b|,\s+(?=(?:so|and|then|now|which)\b)", sentence)
        clauses.extend(p.strip(" .!") for p in parts if p.strip(" .!"))
    return clauses


def _match_step(phrase: str, plan: list[str]) -> str | None:
    words = _stems(phrase)
    if not words:
        return None
    best, best_score = None, 0.0
    for step in plan:
        step_words = _stems(step)
        if not step_words:
            continue
        overlap = len(words & step_words)
        score = overlap / min(len(step_words), 4)
        if overlap and score > best_score:
            best, best_score = step, score
    return best if best_score >= 0.25 else None


def _progress_from(text: str, role: str, plan: list[str]) -> list[str]:
    """Plan steps that this message reports as done."""
    found: list[str] = []
    if _ALL_DONE.search(text) and not re.search(r"\bnot\b|n't", text):
        return list(plan)
    for clause in _clauses(_clean(text)):
        done = _DONE.search(clause) or (role == "user" and _PAST.search(clause))
        if not done or _NOT_DONE.search(clause):
            continue
        if role == "assistant" and not re.search(r"\b(is|are|now|has been|have been|marked|as)\b", clause,
                                                 re.IGNORECASE):
            continue  # the assistant confirms ("step 2 is done"), it does not narrate instructions
        numbers: list[int] = []
        for m in _STEP_REF.finditer(clause):
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else start
            numbers.extend(range(start, end + 1))
            numbers.extend(int(n) for n in re.findall(r"\d{1,2}", m.group(3) or ""))
        numbers.extend(_ORDINALS[m.group(1).lower()] for m in _ORDINAL_REF.finditer(clause))
        if numbers:
            found.extend(plan[n - 1] for n in numbers if 1 <= n <= len(plan))
            continue
        step = _match_step(clause, plan)
        if step is not None:
            found.append(step)
    return found


def _bound_summary(sentences: list[str], limit: int) -> str:
    """Join sentences; past the limit drop the oldest after the first (the request stays)."""
    sentences = [s for s in sentences if s]
    while len(sentences) > 2 and len(" ".join(sentences)) > limit:
        del sentences[1]
    text = " ".join(sentences)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class OfflineExtractor(Extractor):
    name = "offline"
    model = "offline"

    def extract(self, *, previous: dict[str, Any], mode: str, messages: list[PromptMessage],
                deadline: Deadline | None = None) -> ExtractionResult:
        goal = previous.get("goal", "") or ""
        plan = list(previous.get("plan", []) or [])
        progress = list(previous.get("progress", []) or [])
        summary_parts = _SENTENCE.split(previous.get("summary", "") or "") if previous.get("summary") else []
        for message in messages:
            text = message.content
            if message.role == "user":
                new_goal = _goal_from(text)
                if new_goal and (not goal or _GOAL_CHANGE.search(text)):
                    goal = new_goal
            proposed: list[str] | None = None
            if message.role == "assistant":
                new_plan = _plan_from(text)
                if new_plan and new_plan != plan:
                    plan = proposed = new_plan
            if message.role in ("user", "assistant") and plan:
                for step in _progress_from(text, message.role, plan):
                    if step not in progress:
                        progress.append(step)
            if message.role in ("user", "assistant"):
                # A reply that lays out steps opens with a header ("Plan: 1."): say what it proposed instead.
                sentence = (_first_sentence("Proposed a plan: " + "; ".join(proposed), 160) if proposed
                            else _first_sentence(_GREETING.sub("", text) or text, 160))
                if sentence:
                    label = "User" if message.role == "user" else "Assistant"
                    summary_parts.append(f"{label}: {sentence.rstrip('.')}.")
        snapshot: dict[str, Any] = {"summary": _bound_summary(summary_parts, settings.SESSIONCTX_SUMMARY_CHARS)}
        if mode == "planning":
            snapshot.update(goal=goal, plan=plan, progress=progress)
        return ExtractionResult(snapshot=snapshot, usage=Usage(prompt_chars=sum(len(m.content) for m in messages)))
