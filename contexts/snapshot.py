"""The snapshot's fields and their bounds: the one list every writer and extractor checks against."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from .exceptions import InvalidInput
from .models import SESSION_ID_PATTERN, Mode

CONTENT_FIELDS = ("summary", "goal", "plan", "progress", "handoff_note")
EXTRACTED_FIELDS = ("summary", "goal", "plan", "progress")
TEXT_FIELDS = ("summary", "goal", "handoff_note")
STEP_FIELDS = ("plan", "progress")
EMPTY_CONTENT: dict[str, Any] = {"summary": "", "goal": "", "plan": [], "progress": [], "handoff_note": ""}

# Why a change was made (kept in the revision), and a staff member's note on a handoff.
REASON_MAX_CHARS = 2000
NOTE_MAX_CHARS = 4000


def fields_for(mode: str) -> tuple[str, ...]:
    """The fields an extraction fills in this mode."""
    return EXTRACTED_FIELDS if mode == Mode.PLANNING else ("summary",)


def text_limit(name: str) -> int:
    return settings.SESSIONCTX_MAX_SUMMARY_CHARS if name == "summary" else settings.SESSIONCTX_MAX_GOAL_CHARS


def validate_session_id(session_id: Any) -> str:
    # Dots alone (".", "..") are path segments a browser or proxy resolves away, so no link could reach them.
    if (not isinstance(session_id, str) or not re.fullmatch(SESSION_ID_PATTERN, session_id)
            or not session_id.strip(".")):
        raise InvalidInput(
            "A session id is 1-255 characters of A-Z a-z 0-9 . _ : @ -, not dots alone.",
            code="invalid_session_id",
            details={"session_id": str(session_id)[:300]},
        )
    return session_id


def _lines(text: str) -> str:
    """Stripped, with one kind of line break: a browser posts a textarea's as CRLF, and a save that changed
    nothing must not become a new version (nor put CRLF into the agents' prompts)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _step_problem(value: Any) -> str | None:
    if not isinstance(value, list):
        return "Must be a list of strings."
    if len(value) > settings.SESSIONCTX_MAX_PLAN_STEPS:
        return f"At most {settings.SESSIONCTX_MAX_PLAN_STEPS} steps."
    for i, step in enumerate(value):
        if not isinstance(step, str) or not step.strip():
            return f"Step {i + 1} must be a non-empty string."
        if "\x00" in step:
            return f"Step {i + 1} holds a null character."
        if len(_lines(step)) > settings.SESSIONCTX_MAX_STEP_CHARS:
            return f"Step {i + 1} is longer than {settings.SESSIONCTX_MAX_STEP_CHARS} characters."
    return None


def _text_problem(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return "Must be a string."
    if "\x00" in value:
        return "Holds a null character."
    if len(_lines(value)) > limit:
        return f"Has {len(_lines(value))} characters; compress it to at most {limit}."
    return None


def problems(values: dict[str, Any], *, summary_limit: int | None = None) -> dict[str, str]:
    """What is wrong with each snapshot field of `values` (types and bounds); empty when nothing is.

    A null character is refused wherever the value came from (a page's plan rows, a model's answer, an import):
    PostgreSQL stores none in text or jsonb, so it would be a 500 there and not on SQLite.

    `summary_limit`: a tighter bound on the summary than the hard one (extraction asks for less).
    """
    found: dict[str, str] = {}
    for name, value in values.items():
        if name in STEP_FIELDS:
            problem = _step_problem(value)
        elif name in TEXT_FIELDS:
            limit = summary_limit if name == "summary" and summary_limit is not None else text_limit(name)
            problem = _text_problem("" if value is None else value, limit)
        elif name == "mode":
            problem = None if value in Mode.values else f"Must be one of {', '.join(Mode.values)}."
        else:
            problem = "Unknown field."
        if problem is not None:
            found[name] = problem
    return found


def validate_snapshot(changes: dict[str, Any]) -> dict[str, Any]:
    """Snapshot fields (and `mode`) checked against types and bounds: cleaned, or InvalidInput naming each."""
    found = problems(changes)
    if found:
        # Each problem in the message too: a staff page shows the message, not the details.
        said = "; ".join(f"{name} {problem[0].lower()}{problem[1:]}" for name, problem in found.items())
        raise InvalidInput(f"The context is not valid: {said}", details={"fields": found})
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        if name in STEP_FIELDS:
            cleaned[name] = [_lines(step) for step in value]
        elif name in TEXT_FIELDS:
            cleaned[name] = _lines(value or "")
        else:
            cleaned[name] = value
    return cleaned


def validate_reason(reason: Any) -> str:
    """A required reason, kept with the revision it explains."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("A reason is required.", code="reason_required",
                           details={"fields": {"reason": "This field is required."}})
    if len(reason.strip()) > REASON_MAX_CHARS:
        raise InvalidInput(f"A reason is at most {REASON_MAX_CHARS} characters.",
                           details={"fields": {"reason": f"At most {REASON_MAX_CHARS} characters."}})
    return reason.strip()
