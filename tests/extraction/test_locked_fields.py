"""Staff-locked fields (#18.6) through the real extraction path: the real openai client against the fake server."""

from __future__ import annotations

import pytest
from django.db import connection

from contexts import services
from contexts.exceptions import VersionConflict
from contexts.models import ExtractionRun, LockChange, Proposal, Revision, SessionContext
from contexts.services import Actor
from contexts.services.locks import locks_set, proposal_accept, proposal_dismiss
from tests.extraction.conftest import post
from tests.factories import make_session, make_user
from tests.fake_openai import answer, parse_prompt

pytestmark = pytest.mark.django_db

PLAN = ["Export posts", "Convert to Markdown", "Deploy to Netlify"]


def _locked_session():
    session = make_session(content={"goal": "Move the blog to Hugo", "plan": PLAN})
    editor = make_user("edna", role="editor")
    locks_set(session=session, fields=["plan"], reason="The customer agreed this plan with us",
              actor=Actor.for_user(editor))
    return session, editor


def _extract_turn(session, fake_model, extract, n: int):
    post(session, ("user", f"Question number {n} about hosting choices"), ("assistant", f"Answer number {n}"))
    fake_model.push(answer({"summary": f"Turn {n} discussed hosting.", "goal": "Move the blog to Hugo",
                            "plan": [f"Rewrite step {n}", "Deploy somewhere"], "progress": []}))
    return extract(session)


def test_a_locked_plan_survives_ten_extractions_and_keeps_one_latest_proposal(fake_model, extract):
    session, _ = _locked_session()
    runs = [_extract_turn(session, fake_model, extract, n) for n in range(1, 11)]

    assert [run.status for run in runs] == [ExtractionRun.Status.SUCCEEDED] * 10, [run.error for run in runs]
    session.refresh_from_db()
    assert session.plan == PLAN
    assert session.summary == "Turn 10 discussed hosting."  # unlocked fields still follow the conversation
    assert session.cursor_seq == 20
    assert not any("plan" in r.changed_fields for r in Revision.objects.filter(session=session, source="extraction"))
    proposal = Proposal.objects.get(session=session)
    assert (proposal.field, proposal.value, proposal.from_run_id) == ("plan", ["Rewrite step 10", "Deploy somewhere"],
                                                                       runs[-1].pk)


@pytest.mark.django_db(transaction=True)
def test_an_editors_change_of_a_locked_field_during_the_model_call_is_not_proposed_back_to_the_old_value(
        fake_model, extract):
    session = make_session(content={"goal": "Move the blog to Hugo", "plan": PLAN})
    editor = make_user("edna")  # no role group: an earlier test's flush may have removed the migration's groups
    locks_set(session=session, fields=["plan"], reason="The customer agreed this plan with us",
              actor=Actor.for_user(editor))
    post(session, ("user", "Which host is cheaper for a small static blog?"), ("assistant", "Netlify's free tier."))
    edited = ["Export posts", "Convert to Markdown", "Deploy to Cloudflare Pages"]

    def editor_edits_the_plan_then_the_model_answers(request):
        if len(fake_model.requests) == 1:  # while the model works, the editor changes the locked plan
            current = SessionContext.objects.get(pk=session.pk)
            services.snapshot_update(session=current, expected_version=current.version, changes={"plan": edited},
                                     source="staff", actor=Actor.for_user(editor))
            connection.close()  # this runs in the fake server's thread
        previous, _ = parse_prompt(request)
        return answer({**previous, "summary": "Netlify's free tier suits the blog."})  # the plan left as it was

    fake_model.default = editor_edits_the_plan_then_the_model_answers

    run = extract(session)

    assert run.status == ExtractionRun.Status.SUCCEEDED, run.error
    assert (session.plan, session.summary) == (edited, "Netlify's free tier suits the blog.")
    # The model proposed no plan: nothing asks the editor to put the plan back as it was before their edit.
    assert not Proposal.objects.filter(session=session).exists()


def test_accept_applies_exactly_the_proposal_as_the_editors_revision(fake_model, extract):
    session, editor = _locked_session()
    _extract_turn(session, fake_model, extract, 1)
    session.refresh_from_db()

    updated = proposal_accept(session=session, field="plan", expected_version=session.version,
                              actor=Actor.for_user(editor))

    session.refresh_from_db()
    assert session.plan == ["Rewrite step 1", "Deploy somewhere"] == updated.plan
    revision = Revision.objects.get(session=session, version=session.version)
    assert (revision.source, revision.actor_user, revision.changed_fields) == ("staff", editor, ["plan"])
    assert not Proposal.objects.filter(session=session).exists()


def test_accept_on_a_stale_version_changes_nothing_and_keeps_the_proposal(fake_model, extract):
    session, editor = _locked_session()
    _extract_turn(session, fake_model, extract, 1)
    session.refresh_from_db()

    with pytest.raises(VersionConflict):
        proposal_accept(session=session, field="plan", expected_version=session.version - 1,
                        actor=Actor.for_user(editor))

    session.refresh_from_db()
    assert session.plan == PLAN
    assert Proposal.objects.filter(session=session, field="plan").exists()


def test_dismiss_drops_the_proposal_and_keeps_the_snapshot(fake_model, extract):
    session, editor = _locked_session()
    _extract_turn(session, fake_model, extract, 1)
    session.refresh_from_db()
    version = session.version

    proposal_dismiss(session=session, field="plan", actor=Actor.for_user(editor))

    session.refresh_from_db()
    assert (session.plan, session.version) == (PLAN, version)
    assert not Proposal.objects.filter(session=session).exists()


def test_after_unlocking_the_next_extraction_writes_the_field_again(fake_model, extract):
    session, editor = _locked_session()
    _extract_turn(session, fake_model, extract, 1)
    locks_set(session=session, fields=[], reason="", actor=Actor.for_user(editor))
    assert not Proposal.objects.filter(session=session).exists()

    _extract_turn(session, fake_model, extract, 2)

    session.refresh_from_db()
    assert session.plan == ["Rewrite step 2", "Deploy somewhere"]
    assert list(LockChange.objects.filter(session=session).values_list("fields", "actor")) == [
        ([], "user:edna"), (["plan"], "user:edna")]


def test_reextract_from_scratch_keeps_a_locked_field():
    from django.core.management import call_command

    session = make_session("lk-rw", content={"goal": "Agreed with the customer: migrate by 1 May", "plan": ["A", "B"],
                                             "summary": "Earlier summary"})
    locks_set(session=session, fields=["goal"], reason="agreed", actor=Actor.for_user(make_user("edna", role="editor")))
    post(session, ("user", "I need to migrate the database to PostgreSQL."), ("assistant", "Steps:\n1. Dump\n2. Load"))

    call_command("reextract", "--all", "--from-scratch", "--reason", "new rules", "--sync")

    session.refresh_from_db()
    assert session.goal == "Agreed with the customer: migrate by 1 May"
    assert session.plan == ["Dump", "Load"]  # unlocked fields were emptied and re-read
    assert session.summary != "Earlier summary"
