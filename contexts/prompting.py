"""Rendering a snapshot as the <session_context> block agents put in their system prompt."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Any spelling of the block's tags inside stored text (case, spaces, a slash) would let a
# user close the block early or forge a new one; such text is defanged before rendering.
# It is matched on a skeleton of the text (NFKC, without invisible characters or combining
# marks), so fullwidth brackets and a zero-width space inside the word do not hide it.
_TAG = re.compile(r"<\s*/?\s*session[\s_-]*context\s*/?\s*>", re.IGNORECASE)
# Control (Cc), format (Cf: zero-width, bidi overrides, BOM, tag characters) and lone surrogates
# (Cs) are invisible to a reader but not to a model; they are stripped from every value.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})
_SKIPPED_IN_SKELETON = _INVISIBLE | {"Mn", "Me"}
_BLOCK_LINE_INDENT = "  "
# Every character whose NFKC form is "<" (a test checks this against the whole of Unicode):
# text without one cannot hold a tag, which spares most values the per-character pass.
_OPENING_BRACKETS = frozenset("<\ufe64\uff1c")
_ASCII_INVISIBLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _skeleton(text: str) -> tuple[str, list[int]]:
    """The text as compared with the tag, and for each of its characters the index it came from."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _SKIPPED_IN_SKELETON:
            continue
        for folded in unicodedata.normalize("NFKC", ch):
            chars.append(folded)
            origin.append(i)
    return "".join(chars), origin


def _defang(segment: str) -> str:
    out = []
    for ch in segment:
        folded = unicodedata.normalize("NFKC", ch)
        out.append("‹" if folded == "<" else "›" if folded == ">" else ch)
    return "".join(out)


def neutralise(text: str) -> str:
    """The text with every spelling of the block's tags defanged (its brackets become ‹ ›)."""
    if _OPENING_BRACKETS.isdisjoint(text):
        return text
    skeleton, origin = _skeleton(text)
    pieces: list[str] = []
    done = 0
    for match in _TAG.finditer(skeleton):
        start, end = origin[match.start()], origin[match.end() - 1] + 1
        pieces.append(text[done:start])
        pieces.append(_defang(text[start:end]))
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _visible_chars(text: str) -> str:
    if text.isascii():
        return _ASCII_INVISIBLE.sub("", text)
    return "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE)


def _value_lines(value: Any) -> list[str]:
    """A value's visible lines: split at every line break, invisible characters and blank lines dropped."""
    lines = []
    # Neutralised whole, before the split, so a tag broken over two lines is caught too.
    for raw in neutralise(str(value or "")).splitlines():
        line = _visible_chars(raw.replace("\t", " "))
        if line.strip():
            lines.append(line.rstrip())
    if lines:
        lines[0] = lines[0].lstrip()
    return lines


def _item(prefix: str, lines: list[str]) -> list[str]:
    # Continuation lines are indented, so no line of a value can read as a section, a step or a tag.
    return [prefix + lines[0]] + [_BLOCK_LINE_INDENT + line for line in lines[1:]]


def render_prompt(snapshot: Any) -> str:
    """The prompt block for a SessionContext (or a snapshot dict); empty when there is nothing to say."""
    get = snapshot.get if isinstance(snapshot, dict) else lambda name, default=None: getattr(snapshot, name, default)
    mode = get("mode", "summary")
    out: list[str] = []
    if summary := _value_lines(get("summary", "")):
        out += _item("Summary: ", summary)
    if mode == "planning":
        if goal := _value_lines(get("goal", "")):
            out += _item("Goal: ", goal)
        plan = [lines for lines in map(_value_lines, get("plan", []) or []) if lines]
        progress = [lines for lines in map(_value_lines, get("progress", []) or []) if lines]
        if plan:
            out.append("Plan:")
            for i, step in enumerate(plan, 1):
                out += _item(f"{i}. ", step)
        if progress:
            out.append("Completed:")
            for step in progress:
                out += _item("✓ ", step)
    if note := _value_lines(get("handoff_note", "")):
        out += _item("Handoff note: ", note)
    if not out:
        return ""
    return "<session_context>\n" + "\n".join(out) + "\n</session_context>"
