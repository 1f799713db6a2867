"""An extraction that overlaps agents' and staff's writes still lands: its answer is merged field by field onto
what they wrote (three-way, with the snapshot it started from as the base), and contention never fails a run."""

from __future__ import annotations

import pytest

from contexts import services
from contexts.extraction.apply import extraction_run
from contexts.extraction.extractors.base import ExtractionResult, Extractor, Usage
from contexts.extraction.merge import merge
from contexts.models import ExtractionRun, Revision, SessionContext
from contexts.services import Actor
from tests.extraction.conftest import post
from tests.factories import make_session

pytestmark = pytest.mark.django_db

AGENT = Actor.system("key:agent")


class WritingModel(Extractor):
    """A model whose every answer takes long enough for an agent to write meanwhile: `write(session)` runs
    during each call (outside the extraction's transactions, as a concurrent request would)."""

    name = model = "writing-model"

    def __init__(self, session: SessionContext, answer: dict, write) -> None:
        self.session, self.answer, self.write, self.calls = session, answer, write, 0

    def extract(self, *, previous, mode, messages, deadline=None):
        self.calls += 1
        self.write(self.session, self.calls)
        return ExtractionResult(snapshot={**previous, **self.answer}, usage=Usage(model_calls=1))


def _agent_patch(**changes):
    def write(session, call):
        current = SessionContext.objects.get(pk=session.pk)
        services.snapshot_update(session=current, expected_version=current.version,
                                 changes={name: value(call) if callable(value) else value
                                          for name, value in changes.items()},
                                 source=Revision.Source.API, actor=AGENT)
    return write


def _run(session, extractor) -> ExtractionRun:
    run = ExtractionRun.objects.create(session_id=session.pk, trigger="test")
    extraction_run(run_id=str(run.pk), extractor=extractor)
    return ExtractionRun.objects.get(pk=run.pk)


def test_a_write_to_another_field_during_every_model_call_does_not_stop_the_extraction():
    session = make_session(mode="planning", content={"summary": "old", "goal": "Move", "plan": ["a", "b"]})
    post(session, ("user", "a is done"), ("assistant", "Great, b next"))
    model = WritingModel(session, {"summary": "a done, b next", "progress": ["a"]},
                         _agent_patch(goal=lambda call: f"Move, take {call}"))

    run = _run(session, model)

    session.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert model.calls == 1  # merged, not recomputed
    assert session.summary == "a done, b next" and session.progress == ["a"]  # the model's fields
    assert session.goal == "Move, take 1"  # the agent's write stands
    assert session.cursor_seq == session.last_message_seq
    last = Revision.objects.filter(session=session).order_by("-version").first()
    assert last.source == "extraction" and sorted(last.changed_fields) == ["progress", "summary"]


def test_progress_both_sides_added_to_is_merged_keeping_both():
    session = make_session(mode="planning", content={"plan": ["a", "b", "c"], "progress": ["a"]})
    post(session, ("user", "b is done"), ("assistant", "Noted"))
    model = WritingModel(session, {"progress": ["a", "b"]}, _agent_patch(progress=["a", "c"]))

    run = _run(session, model)

    session.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert session.progress == ["a", "c", "b"]


def test_a_field_both_changed_keeps_the_writers_value_and_recomputes_from_it():
    session = make_session(mode="planning", content={"summary": "start", "goal": "Move"})
    post(session, ("user", "hello"), ("assistant", "hi"))
    # The agent rewrites the summary during the first call only; the recomputed answer builds on it.
    writes = _agent_patch(summary="the agent's own summary")
    model = WritingModel(session, {"summary": "model summary"},
                         lambda s, call: writes(s, call) if call == 1 else None)

    run = _run(session, model)

    session.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert model.calls == 2
    assert session.summary == "model summary" and session.cursor_seq == session.last_message_seq


def test_contention_alone_never_fails_a_run_and_never_moves_the_cursor_past_unseen_content(settings):
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 3  # the attempt's deadline comes during the contention
    session = make_session(mode="summary", content={"summary": "start"})
    post(session, ("user", "hello"), ("assistant", "hi"))
    model = WritingModel(session, {"summary": "model summary"},
                         _agent_patch(summary=lambda call: f"agent summary {call}"))

    run = _run(session, model)

    session.refresh_from_db()
    assert run.status != "failed", run.error
    assert session.cursor_seq == 0  # the messages' content is in no snapshot yet: still unseen
    follow_up = ExtractionRun.objects.filter(session=session, status="queued").exclude(pk=run.pk)
    assert follow_up.exists()  # the messages are taken up again, not dropped


@pytest.mark.parametrize(("base", "theirs", "ours", "merged", "unmerged"), [
    ({"summary": "b"}, {"summary": "b"}, {"summary": "o"}, {"summary": "o"}, []),
    ({"summary": "b"}, {"summary": "t"}, {"summary": "b"}, {"summary": "t"}, []),
    ({"summary": "b"}, {"summary": "t"}, {"summary": "o"}, {"summary": "t"}, ["summary"]),
    ({"summary": "b"}, {"summary": "o"}, {"summary": "o"}, {"summary": "o"}, []),
    ({"progress": ["a"]}, {"progress": ["a", "c"]}, {"progress": ["a", "b"]}, {"progress": ["a", "c", "b"]}, []),
    ({"progress": ["a"]}, {"progress": []}, {"progress": ["a", "b"]}, {"progress": ["b"]}, []),
    ({"plan": ["a", "b"]}, {"plan": ["a", "x"]}, {"plan": ["b", "a"]}, {"plan": ["a", "x"]}, ["plan"]),
])
def test_merge_field_by_field(base, theirs, ours, merged, unmerged):
    assert merge(base=base, theirs=theirs, ours=ours) == (merged, unmerged)
