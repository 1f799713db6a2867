"""The summary: who said what, the informative sentences of every turn, within its bound."""

from __future__ import annotations

import re

from .goal import GREETING
from .plan import LIST_ITEM
from .text import clean, split_sentences, words

_NUMBERISH = re.compile(r"\d")
_IDENTIFIER = re.compile(r"\w_\w|[a-z][A-Z]")  # request_id, ElastAlert: names, whatever their case
_DECISION = re.compile(
    r"\b(decided|decision|going with|went with|chose|choose|agreed|approved|refunded|refund|opened|booked|signed|"
    r"confirmed|scheduled|will|won't|instead|fixed|found|because|cause|root cause|workaround|credit|deadline|"
    r"budget|decidimos|vamos a|elegimos|he emitido|reservado|entschieden|gebucht|bestätigt|nehmen|décidé|choisi|"
    r"réservé|on part|remboursé|prévu)\b", re.IGNORECASE)


_FILLER = re.compile(r"^(good|great|nice|perfect|excellent|sure|ok|okay|thanks|thank you|cool|sounds good|got it|"
                     r"fine|noted|bien|perfecto|gracias|gut|prima|super|danke|parfait|merci|d'accord|très bien|"
                     r"brilliant|lovely|fun|wonderful|makes sense|good call|smart|will do|fingers crossed|"
                     r"happy to help|of course|congratulations|enhorabuena|claro|gern|gerne|avec plaisir|bien s[uû]r)"
                     r"\b[^.!?]{0,25}[.!?]?$", re.IGNORECASE)


_USER_WEIGHT = 2.0


def _weight(sentence: str) -> float:
    """How much a summary sentence tells: names, numbers, identifiers and decisions count most."""
    body = sentence
    tokens = body.split()
    score = 2.0 * sum(1 for t in tokens if _NUMBERISH.search(t))
    score += sum(1.0 for t in tokens[1:] if t[:1].isupper())
    score += sum(1.0 for t in tokens if _IDENTIFIER.search(t))
    score += 1.5 * len(_DECISION.findall(body))
    return score + 0.1 * len(words(body))


def bound_summary(units: list[tuple[str, str]], limit: int) -> str:
    """Render; past the limit shorten, then drop, the least informative sentence after the first (the request
    stays)."""
    units = list(units)
    while len(units) > 2 and len(_render(units)) > limit:
        # What a sentence tells per character it takes: long sentences with one fact go before short ones with two;
        # the user's own sentences count double (they hold most of what a summary must keep: names, amounts,
        # dates; the assistant's are mostly advice).
        weakest = min(range(1, len(units)), key=lambda i: (
            _weight(units[i][1]) / len(units[i][1]) * (_USER_WEIGHT if units[i][0] == "User" else 1.0), i))
        label, sentence = units[weakest]
        shorter = _compressed(sentence)
        if shorter != sentence:
            units[weakest] = (label, shorter)
        else:
            del units[weakest]
    text = _render(units)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _compressed(sentence: str) -> str:
    """A sentence without its comma-parts and asides that tell nothing (no name, number or decision), or as it is."""
    parts = re.split(r"(?<=,)\s+|\s+(?=\()", sentence)
    if len(parts) < 2:
        return sentence
    kept = [parts[0]] + [p for p in parts[1:] if _weight(p) >= 1]
    if len(kept) == len(parts):
        return sentence
    text = " ".join(kept).rstrip(" ,")
    return text + ("" if text[-1:] in ".!?…" else ".")


def _render(units: list[tuple[str, str]]) -> str:
    """Sentences grouped by who said them: "User: … Assistant: …"."""
    out: list[str] = []
    last = None
    for label, sentence in units:
        if label == "Plan":
            out.append(sentence)
            last = None
            continue
        out.append(f"{label}: {sentence}" if label != last else sentence)
        last = label
    return " ".join(out)


def parse_summary(summary: str) -> list[tuple[str, str]]:
    """A summary this extractor wrote, back into (who, sentence) units."""
    units: list[tuple[str, str]] = []
    label = "User"
    # The splitter that cut the sentences ("am 4. Oktober" stays one), and after a sentence cut short ("…").
    for sentence in (part for chunk in re.split(r"(?<=…)\s+", summary) for part in split_sentences(chunk)):
        if not sentence:
            continue
        match = re.match(r"^(User|Assistant): ", sentence)
        if match:
            label, sentence = match.group(1), sentence[match.end():]
        elif sentence.startswith("Assistant proposed a plan: "):
            units.append(("Plan", sentence))
            label = "Assistant"
            continue
        units.append((label, sentence))
    return units


def summary_units(text: str, role: str, proposed: list[str] | None) -> list[tuple[str, str]]:
    """A message's informative sentences (greetings, fillers, content-free questions left out)."""
    label = "User" if role == "user" else "Assistant"
    units = []
    if proposed:
        # A reply that lays out steps: say what it proposed, and keep what it said around the list.
        units.append(("Plan", "Assistant proposed a plan: " + "; ".join(proposed)[:300].rstrip(";") + "."))
        text = "\n".join(line for line in text.splitlines() if not LIST_ITEM.match(line))
    for sentence in split_sentences(GREETING.sub("", clean(text))):
        if (_FILLER.match(sentence) or not words(sentence) or sentence.endswith(":")
                or sentence.endswith("?") and _weight(sentence) < 2):
            continue
        sentence = sentence if len(sentence) <= 240 else sentence[:239].rstrip() + "…"
        units.append((label, sentence + ("" if sentence[-1] in ".!?…" else ".")))
    return units
