"""Rendering a snapshot as the <session_context> block agents put in their system prompt."""

from __future__ import annotations

import re
from typing import Any

# Any spelling of the block's tags inside stored text (case, spaces, a slash) would let a
# user close the block early or forge a new one; such text is defanged before rendering.
_TAG = re.compile(r"<\s*/?\s*session[\s_-]*context\s*/?\s*>", re.IGNORECASE)


def neutralise(text: str) -> str:
    return _TAG.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)


def _one_line(text: str) -> str:
    return neutralise(text.strip())


def render_prompt(snapshot: Any) -> str:
    """The prompt block for a SessionContext (or a snapshot dict); empty when there is nothing to say."""
    get = snapshot.get if isinstance(snapshot, dict) else lambda name, default=None: getattr(snapshot, name, default)
    mode = get("mode", "summary")
    summary = (get("summary", "") or "").strip()
    lines: list[str] = []
    if summary:
        lines.append(f"Summary: {_one_line(summary)}")
    if mode == "planning":
        goal = (get("goal", "") or "").strip()
        plan = [s for s in (get("plan", []) or []) if str(s).strip()]
        progress = [s for s in (get("progress", []) or []) if str(s).strip()]
        if goal:
            lines.append(f"Goal: {_one_line(goal)}")
        if plan:
            lines.append("Plan:")
            lines.extend(f"{i}. {_one_line(str(step))}" for i, step in enumerate(plan, 1))
        if progress:
            lines.append("Completed:")
            lines.extend(f"✓ {_one_line(str(step))}" for step in progress)
    note = (get("handoff_note", "") or "").strip()
    if note:
        lines.append(f"Handoff note: {_one_line(note)}")
    if not lines:
        return ""
    return "<session_context>\n" + "\n".join(lines) + "\n</session_context>"
