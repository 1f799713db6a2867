"""contexts/snapshot.py: the one list of snapshot fields and bounds. The bounds come from settings, and the
extractor's answer check reports the same rule in the same words."""

from __future__ import annotations

import json

import pytest

from contexts.exceptions import InvalidInput
from contexts.extraction.extractors.openai_extractor import check_answer
from contexts.snapshot import REASON_MAX_CHARS, problems, validate_reason, validate_snapshot


def test_a_valid_snapshot_is_cleaned_of_surrounding_space():
    cleaned = validate_snapshot({"summary": "  Trip to Lisbon. ", "goal": None, "plan": [" Book flights "],
                                 "progress": [], "handoff_note": "", "mode": "planning"})
    assert cleaned == {"summary": "Trip to Lisbon.", "goal": "", "plan": ["Book flights"], "progress": [],
                       "handoff_note": "", "mode": "planning"}


def test_every_bad_field_is_named_at_once():
    with pytest.raises(InvalidInput) as info:
        validate_snapshot({"summary": 5, "plan": ["ok", " "], "progress": "x", "colour": "blue", "mode": "chatty"})
    assert set(info.value.details["fields"]) == {"summary", "plan", "progress", "colour", "mode"}
    assert info.value.details["fields"]["plan"] == "Step 2 must be a non-empty string."


def test_the_bounds_come_from_settings(settings):
    settings.SESSIONCTX_MAX_SUMMARY_CHARS = 50
    settings.SESSIONCTX_MAX_GOAL_CHARS = 20
    settings.SESSIONCTX_MAX_PLAN_STEPS = 3
    settings.SESSIONCTX_MAX_STEP_CHARS = 10

    assert problems({"summary": "x" * 50, "goal": "g" * 20, "handoff_note": "n" * 20, "plan": ["s" * 10] * 3}) == {}
    assert problems({"summary": "x" * 51, "goal": "g" * 21, "handoff_note": "n" * 21, "plan": ["s"] * 4,
                     "progress": ["s" * 11]}) == {
        "summary": "Has 51 characters; compress it to at most 50.",
        "goal": "Has 21 characters; compress it to at most 20.",
        "handoff_note": "Has 21 characters; compress it to at most 20.",
        "plan": "At most 3 steps.",
        "progress": "Step 1 is longer than 10 characters.",
    }


def test_a_tighter_summary_limit_applies_to_the_summary_only(settings):
    settings.SESSIONCTX_MAX_GOAL_CHARS = 100
    assert problems({"summary": "x" * 30, "goal": "g" * 30}, summary_limit=20) == {
        "summary": "Has 30 characters; compress it to at most 20."}


@pytest.mark.parametrize("answer, field", [
    ({"summary": "x" * 61}, "summary"),
    ({"summary": "ok", "goal": "g", "plan": ["a", "b", "c", "d"], "progress": []}, "plan"),
    ({"summary": "ok", "goal": "g" * 41, "plan": [], "progress": []}, "goal"),
    ({"summary": "ok", "goal": "g", "plan": [], "progress": ["p" * 11]}, "progress"),
], ids=["summary", "plan-steps", "goal", "step-length"])
def test_the_extractors_answer_check_reports_the_same_rule(settings, answer, field):
    settings.SESSIONCTX_MAX_SUMMARY_CHARS = 60
    settings.SESSIONCTX_MAX_GOAL_CHARS = 40
    settings.SESSIONCTX_MAX_PLAN_STEPS = 3
    settings.SESSIONCTX_MAX_STEP_CHARS = 10
    mode = "summary" if set(answer) == {"summary"} else "planning"

    snapshot, found = check_answer(json.dumps(answer), mode=mode, summary_limit=settings.SESSIONCTX_MAX_SUMMARY_CHARS)

    assert snapshot is None
    assert found == [f"{field}: {problems(answer)[field]}"]
    with pytest.raises(InvalidInput) as info:
        validate_snapshot(answer)
    assert info.value.details["fields"] == {field: problems(answer)[field]}


def test_an_answer_within_the_bounds_is_the_snapshot(settings):
    settings.SESSIONCTX_MAX_SUMMARY_CHARS = 60
    answer = {"summary": "x" * 60, "goal": "g", "plan": ["a"], "progress": []}
    snapshot, found = check_answer(json.dumps(answer), mode="planning", summary_limit=60)
    assert found == [] and snapshot == answer


def test_a_reason_is_required_and_bounded():
    assert validate_reason("  because  ") == "because"
    assert validate_reason("r" * REASON_MAX_CHARS) == "r" * REASON_MAX_CHARS
    for bad in (None, "", "   ", "r" * (REASON_MAX_CHARS + 1)):
        with pytest.raises(InvalidInput):
            validate_reason(bad)
