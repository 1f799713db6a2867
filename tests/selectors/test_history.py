"""The audit history as staff read it: revisions with their diffs, a plan's progress, the conversation."""

from __future__ import annotations

import uuid

import pytest

from contexts import selectors, services
from contexts.exceptions import NotFound
from contexts.models import ExtractionRun, Project
from contexts.services import Actor
from tests.factories import make_session

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tester")


def test_plan_progress_matches_done_steps_whatever_their_case_and_spacing():
    session = make_session(content={"plan": ["Book flights", "Pick a hotel", "Pack"],
                                    "progress": [" book FLIGHTS", "Renew passport"]})
    progress = selectors.plan_progress(session)
    assert progress.steps == [("Book flights", True), ("Pick a hotel", False), ("Pack", False)]
    assert progress.other_progress == ["Renew passport"]
    assert (progress.done, progress.total, progress.percent) == (1, 3, 33)
    assert selectors.plan_progress(make_session()).percent == 0


def test_snapshot_diff_shows_changed_fields_only_words_for_text_items_for_lists():
    before = {"status": "active", "summary": "Trip to Lisbon in May", "plan": ["a", "b"], "progress": ["a"],
              "goal": "Plan it"}
    after = {"status": "active", "summary": "Trip to Porto in May", "plan": ["b", "a"], "progress": ["a", "b"],
             "goal": "Plan it"}

    diffs = {d.name: d for d in selectors.snapshot_diff(before, after)}

    assert set(diffs) == {"summary", "plan", "progress"}
    assert diffs["summary"].words == [("same", "Trip to "), ("del", "Lisbon"), ("gap", " "), ("ins", "Porto"),
                                      ("same", " in May")]
    assert diffs["plan"].reordered and diffs["plan"].added == diffs["plan"].removed == []
    assert (diffs["progress"].added, diffs["progress"].removed, diffs["progress"].reordered) == (["b"], [], False)


def test_a_mostly_rewritten_text_is_shown_as_replaced_whole():
    diff = selectors.snapshot_diff({"summary": "one two three"}, {"summary": "completely different words here"})
    assert diff[0].words == [("del", "one two three"), ("gap", " "), ("ins", "completely different words here")]


def test_revision_history_diffs_each_version_against_the_one_before_in_one_query(django_assert_num_queries):
    session = make_session("hist-1", content={"summary": "first"})
    session = services.snapshot_update(session=session, expected_version=1, changes={"goal": "a goal"},
                                       source="staff", actor=ACTOR)
    session = services.snapshot_reset(session=session, reason="forget", actor=ACTOR)

    with django_assert_num_queries(1):
        history = selectors.revision_history(session)

    assert [h.revision.version for h in history] == [3, 2, 1]
    assert [[d.name for d in h.diffs] for h in history] == [["summary", "goal"], ["goal"], ["summary"]]
    assert history[2].diffs[0].words == [("ins", "first")]  # the first version against the empty context

    shown = selectors.revision_history(session, limit=2)
    assert [(h.revision.version, [d.name for d in h.diffs]) for h in shown] == [(3, ["summary", "goal"]),
                                                                               (2, ["goal"])]
    only_newest = selectors.revision_history(session, limit=1)
    assert [(h.revision.version, len(h.diffs)) for h in only_newest] == [(3, 2)]


def test_unseen_and_recent_messages():
    session = make_session("conv-1")
    services.messages_append(session=session, messages=[{"role": "user", "content": f"m{i}"} for i in range(1, 6)])
    session = services.snapshot_update(session=session, expected_version=0, changes={}, source="extraction",
                                       actor=ACTOR, cursor_seq=3)

    assert [m.content for m in selectors.unseen_messages(session)] == ["m4", "m5"]
    assert [m.seq for m in selectors.recent_messages(session, limit=2)] == [4, 5]
    assert [m.seq for m in selectors.messages_for(session, after_seq=1)] == [2, 3, 4, 5]


def test_a_run_is_read_with_its_session_or_is_not_found():
    session = make_session("conv-2")
    run = ExtractionRun.objects.create(session=session)
    assert selectors.run_get(run.pk, project=Project.default()).session.session_id == "conv-2"
    assert [r.pk for r in selectors.runs_for(session)] == [run.pk]
    with pytest.raises(NotFound):
        selectors.run_get(uuid.uuid4(), project=Project.default())
