"""The plan: the latest list of steps in an assistant reply, and the done steps a revised plan keeps."""

from __future__ import annotations

import re

from django.conf import settings

from .text import clean, stems

LIST_ITEM = re.compile(r"^\s*(?:(?:step\s*)?(\d{1,2})[.):]|[-*•])\s+(.+?)\s*$", re.IGNORECASE)
_PLAN_CUE = re.compile(r"\b(plan|steps?|here'?s how|we'll|let'?s|approach|roadmap|first|then|next|checklist|"
                       r"pasos|plan|vorschlag|schritte|so würde|étapes|voici|plan)\b", re.IGNORECASE)


# An item that reports where a step stands ("The spreadsheet is imported: 212 entries.", "2FA: 11 of 14. Tom still to
# go."): a list of them recaps the plan, it is not one.
_STATUS = re.compile(r"\b(is|are|was|were|has been|have been|done|still|ist|sind|est|sont|está|están|ya)\b.*\.$",
                     re.IGNORECASE)


def _recap(items: list[str]) -> bool:
    return sum(bool(_STATUS.search(item.strip())) for item in items) * 2 > len(items)


def plan_from(text: str) -> list[str] | None:
    """The last list of two or more steps in an assistant reply, or None."""
    lists: list[tuple[bool, list[str]]] = []
    current: list[str] = []
    numbered = False
    for line in text.splitlines():
        match = LIST_ITEM.match(line)
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
    candidates = [items for is_numbered, items in lists
                  if len(items) >= 2 and (is_numbered or cue) and not _recap(items)]
    if not candidates:
        return None
    steps = []
    for item in max(candidates, key=len) if len(candidates) > 1 else candidates[0]:
        step = clean(item)
        step = re.sub(r"^\s*step\s*\d+\s*[:.)-]\s*", "", step, flags=re.IGNORECASE)
        # An item of spaces or markdown alone ("1.  ", "2. **") is no step, and no snapshot may hold an empty one.
        if step.strip():
            steps.append(step[: settings.SESSIONCTX_MAX_STEP_CHARS])
    return steps[: settings.SESSIONCTX_MAX_PLAN_STEPS] if len(steps) >= 2 else None


# A reply that says it replaces the plan ("Revised plan:", "Let me redo it:", "Neuer Plan:").
_REVISION = re.compile(
    r"\b((updated|revised|new|adjusted|amended|changed|reworked|full|whole) plan|plan (redone|revised|updated|changes)|"
    r"here'?s (a|the|my) (new |updated |revised )?plan|let me redo|redo the plan|the steps (shift|change)|"
    r"let'?s (switch|change|pivot|refocus|move) to|neue[rn]? plan|"
    r"plan angepasst|ge[äa]nderte[rn]? plan|nuevo plan|plan (revisado|actualizado|corregido)|nouveau plan|"
    r"plan (mis [àa] jour|r[ée]vis[ée]|modifi[ée]))\b", re.IGNORECASE)


def replaces(text: str, new_plan: list[str], plan: list[str]) -> bool:
    """Whether a list in a reply replaces the plan: the first list does; a later one when the reply says it
    revises the plan or the list keeps one of its steps. Otherwise it is a how-to ("1. Restore the previous
    versions … 2. Run terraform plan …"), not a plan."""
    if not plan:
        return True
    return bool(_REVISION.search(text)) or any(carried([step], new_plan) for step in plan)


def carried(progress: list[str], plan: list[str]) -> list[str]:
    """Done steps that a revised plan still holds (reworded a little, or as they were)."""
    carried = []
    for done in progress:
        words = stems(done)
        best = max(plan, key=lambda step: len(words & stems(step)) / max(len(words | stems(step)), 1))
        if best not in carried and len(words & stems(best)) / max(len(words | stems(best)), 1) >= 0.6:
            carried.append(best)
    return carried
