"""eval_extraction on the labelled conversations (tests/data/conversations): the held-out figures of the offline
extractor, the harness's model path against the fake OpenAI server, and the labelled set itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from contexts.extraction import evaluation
from contexts.models import ExtractionRun, SessionContext
from tests.fake_openai import answer, error

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[1] / "data" / "conversations"
# Measured on held-out (159 conversations, 126 of them written blind by other authors) with the offline extractor
# (docs/extraction.md): goal 0.32, plan 0.97, progress 0.71, key facts 0.88. The floors sit just under, so a rule
# that loses a conversation fails here; the targets (goal 0.9, progress 0.85) are not reached.
HELD_OUT_FLOORS = {"goal": 0.30, "plan_f1": 0.95, "progress_f1": 0.69, "fact_recall": 0.86}


def _floors(floors):
    return [arg for name, value in floors.items() for arg in ("--min", f"{name}={value}")]


def test_offline_extractor_on_the_held_out_set_reaches_the_measured_figures(tmp_path, capsys):
    report = tmp_path / "held-out.md"
    call_command("eval_extraction", "--split", "held-out", "--report", str(report), *_floors(HELD_OUT_FLOORS))
    text = report.read_text()
    assert "| **all** | 159 |" in text and "offline" in text
    assert capsys.readouterr().out == text
    # Replayed on a throwaway state: nothing is left behind.
    assert not SessionContext.objects.exists() and not ExtractionRun.objects.exists()


def test_a_figure_under_its_minimum_fails_the_command_and_names_it():
    with pytest.raises(CommandError, match=r"progress_f1 0\.\d+ < 0\.99"):
        call_command("eval_extraction", "--split", "held-out", "--min", "progress_f1=0.99")
    with pytest.raises(CommandError, match="METRIC is one of"):
        call_command("eval_extraction", "--min", "speed=1")


def _one_conversation(tmp_path, name="lisbon_trip"):
    data = tmp_path / "data"
    data.mkdir()
    label = json.loads((DATA / f"{name}.json").read_text())
    (data / f"{name}.json").write_text(json.dumps(label))
    return data, label


def test_with_model_the_harness_asks_the_configured_endpoint_and_scores_its_answers(fake_model, tmp_path):
    data, label = _one_conversation(tmp_path)
    expected = label["expected"]
    perfect = {"summary": "Lisbon trip for two, a day in Porto instead of Sintra.", "goal": expected["goal"],
               "plan": expected["plan"], "progress": expected["progress"]}
    fake_model.default = lambda request: answer(perfect, prompt_tokens=300, completion_tokens=40)
    report = tmp_path / "model.md"
    call_command("eval_extraction", "--data", str(data), "--model", "fake-model", "--report", str(report))
    text = report.read_text()
    turns = len(list(evaluation.turns(label["messages"])))
    assert len(fake_model.requests) == turns == 4
    assert all(r["model"] == "fake-model" for r in fake_model.requests)
    # One conversation, 4 updates, nothing failed, every figure right, the tokens the server reported.
    assert f"| **all** | 1 | 1.00 | 1.00 | 1.00 | 1.00 | {turns} | 0 | 300 | 40 |" in text, text
    assert "openai (fake-model)" in text


def test_failed_model_runs_are_counted_and_score_as_what_was_kept(fake_model, tmp_path):
    data, _ = _one_conversation(tmp_path)
    fake_model.default = lambda request: error(500, "model crashed")
    report = tmp_path / "model.md"
    call_command("eval_extraction", "--data", str(data), "--model", "fake-model", "--report", str(report))
    # Every update failed (4 runs), nothing was extracted, so every figure is 0.
    assert "| **all** | 1 | 0.00 | 0.00 | 0.00 | 0.00 | 4 | 4 |" in report.read_text()
    assert not SessionContext.objects.exists()


def test_the_labelled_set_is_big_varied_and_split_by_its_fixed_rule():
    conversations = evaluation.load(DATA)
    assert len(conversations) >= 80
    assert {c["mode"] for c in conversations} == {"summary", "planning"}
    assert len({c["domain"] for c in conversations}) >= 6
    assert sum(c["language"] != "en" for c in conversations) >= 10
    assert sum(len(c["messages"]) >= 60 for c in conversations) >= 2
    splits = {c["id"]: c["split"] for c in conversations}
    assert list(splits.values()).count("held-out") >= 30 and list(splits.values()).count("dev") >= 30
    # The rule in the data's README: the 17 original files are dev; the others by SHA-256 of the file's stem.
    assert splits["lisbon_trip"] == "dev" and splits["garden_beds"] == "dev"
    for c in conversations:
        assert set(c["expected"]) >= ({"goal", "plan", "progress", "summary_mentions"} if c["mode"] == "planning"
                                      else {"summary_mentions"}), c["id"]
        assert set(c["expected"].get("progress", [])) <= set(c["expected"].get("plan", [])), c["id"]


@pytest.mark.parametrize(("predicted", "expected", "f1"), [
    (["Book flights", "Book a hotel"], ["Book flights", "Book a hotel"], 1.0),
    (["Book flights"], ["Book flights", "Book a hotel"], 2 / 3),
    ([], [], 1.0),
    (["Book flights"], [], 0.0),
])
def test_steps_f1_matches_steps_one_to_one(predicted, expected, f1):
    assert evaluation.steps_f1(predicted, expected) == pytest.approx(f1)


def test_key_facts_match_whole_words_with_accents_and_alternatives():
    summary = "User: Die Wohnung in Köln ist gekündigt; 1.200 Euro."
    assert evaluation.fact_recall(summary, ["koln", "1.200|1200", "Berlin"]) == pytest.approx(2 / 3)
    assert evaluation.fact_recall("Kölner", ["Köln"]) == 0.0


def test_a_report_file_that_cannot_be_written_is_refused_before_the_model_is_asked(fake_model, tmp_path):
    # It was found only after the whole replay (hours of model calls on a real set), as a FileNotFoundError
    # traceback, and the figures were lost.
    data, _ = _one_conversation(tmp_path)
    with pytest.raises(CommandError, match="--report"):
        call_command("eval_extraction", "--data", str(data), "--model", "fake-model",
                     "--report", str(tmp_path / "missing" / "model.md"))
    assert fake_model.requests == []
