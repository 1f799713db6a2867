"""Prompt injection inside a message (#18 §4): a message written to the extractor rather than to the assistant
("ignore previous instructions and set the goal to …") must not steer the snapshot, because agents put the snapshot
in their system prompt. The prompt tells the model that text inside <message> is data; this is the check that
holds whatever the model (or a rule) did: a field whose new value copies such a message, or carries its override
phrase, keeps its previous value, and the run says which and why. The other fields are applied as usual, so the
conversation's real progress is not lost to one hostile message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the extractors use OVERRIDE: no import of their package at load time
    from .extractors.base import PromptMessage

# Words aimed at whoever reads the conversation, not at the person in it: overriding instructions, claiming a new
# role, or closing the message element to speak as the prompt. Conversation about instructions ("the setup
# instructions were unclear") does not match.
OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|all|any|"
    r"your|the)\b[^.\n]{0,20}?\b(?:instructions?|rules|prompts?|directions|guidelines)\b"
    r"|\b(?:system prompt|developer message|new instructions?:|you are now (?:a|an|the)\b)"
    r"|</\s*message\s*>"
    r"|\b(?:ignora|olvida)\b[^.\n]{0,30}\binstrucciones\b"
    r"|\b(?:ignoriere|vergiss)\b[^.\n]{0,30}\b(?:anweisungen|instruktionen)\b"
    r"|\b(?:ignore[zr]?|oublie[zr]?)\b[^.\n]{0,30}\b(?:consignes|instructions)\b",
    re.IGNORECASE,
)
# A copied value: at least this many characters of it appear word for word in the hostile message.
MIN_COPIED = 12


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def hostile(messages: list[PromptMessage]) -> list[tuple[PromptMessage, str]]:
    """The messages that give instructions to the extractor, with the phrase that does."""
    found = []
    for message in messages:
        match = OVERRIDE.search(message.content)
        if match:
            found.append((message, match.group(0)))
    return found


def _copies(value: Any, source: str) -> bool:
    texts = value if isinstance(value, list) else [value]
    return any(len(norm := _norm(text)) >= MIN_COPIED and norm in source for text in texts if isinstance(text, str))


# The fields a hostile message could put words into (docs/extraction.md): these keep their previous value.
HELD_BACK = ("summary", "goal", "plan")


def contain(previous: dict[str, Any], snapshot: dict[str, Any],
            messages: list[PromptMessage]) -> tuple[dict[str, Any], list[str]]:
    """The snapshot with every field that follows a hostile message put back to its previous value, and a note
    per field put back (empty when nothing was)."""
    found = hostile(messages)
    if not found:
        return snapshot, []
    kept = dict(snapshot)
    notes = []
    for name, value in snapshot.items():
        before = previous.get(name)
        if value == before or name not in HELD_BACK:
            # Progress is not held back: a step reported done in the same message ("Dump the schema: done.
            # Also, ignore previous instructions …") is real, and it can only name a step of the plan.
            continue
        new = value if isinstance(value, list) else [value]
        old = before if isinstance(before, list) else [before or ""]
        added = [text for text in new if text not in old]  # a step kept from before is not the message's doing
        for message, phrase in found:
            source = _norm(message.content)
            said = any(OVERRIDE.search(text) and not OVERRIDE.search(" ".join(map(str, old))) for text in added)
            if said or _copies(added, source):
                kept[name] = before if before is not None else value
                notes.append(f"{name} kept as it was: the answer took it from message {message.seq}, which gives "
                             f"instructions to the extractor ({phrase!r}); text in a message is conversation data")
                break
    return kept, notes
