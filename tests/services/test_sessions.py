"""Sessions come into being on first use (version 0, empty) and go with everything they hold."""

from __future__ import annotations

import threading

import pytest
from django.db import transaction

from contexts import services
from contexts.exceptions import InvalidInput
from contexts.models import ExtractionRun, HandoffEvent, Message, Revision, SessionContext
from contexts.services import Actor
from tests.concurrency import one_queued_behind_the_other
from tests.factories import make_session

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tester")


def test_new_session_is_empty_at_version_zero_without_revisions(settings):
    session, created = services.session_get_or_create(session_id="new-1")
    assert created and (session.version, session.mode) == (0, settings.SESSIONCTX_DEFAULT_MODE)
    assert session.is_empty
    assert SessionContext.objects.get(session_id="new-1").pk == session.pk
    assert Revision.objects.filter(session=session).count() == 0


def test_getting_an_existing_session_creates_nothing_and_keeps_its_mode():
    first, _ = services.session_get_or_create(session_id="again-1", mode="summary")
    again, created = services.session_get_or_create(session_id="again-1", mode="planning")
    assert not created and again.pk == first.pk and again.mode == "summary"
    assert SessionContext.objects.filter(session_id="again-1").count() == 1


def test_session_id_outside_the_allowed_alphabet_is_refused():
    for bad in ["has space", "slash/y", "x" * 256, "", None]:
        with pytest.raises(InvalidInput):
            services.session_get_or_create(session_id=bad)
    assert SessionContext.objects.count() == 0


def test_a_bad_mode_or_owner_is_refused_and_creates_nothing():
    with pytest.raises(InvalidInput):
        services.session_get_or_create(session_id="bad-mode", mode="chatty")
    with pytest.raises(InvalidInput):
        services.session_get_or_create(session_id="bad-owner", team_id="t" * 256)
    assert SessionContext.objects.count() == 0


def test_delete_removes_session_with_everything_it_holds():
    session = make_session("del-1", content={"summary": "x"})
    services.messages_append(session=session, messages=[{"role": "user", "content": "hi"}])
    services.handoff_request(session=session, reason="help", actor=ACTOR)
    ExtractionRun.objects.create(session=session)
    kept = make_session("del-2", content={"summary": "y"})

    services.session_delete(session=session, actor=ACTOR)

    assert list(SessionContext.objects.values_list("session_id", flat=True)) == ["del-2"]
    for model in (Revision, Message, HandoffEvent, ExtractionRun):
        assert not model.objects.exclude(session=kept).exists(), model.__name__
    assert Revision.objects.filter(session=kept).count() == 1


def test_a_deleted_sessions_id_starts_afresh():
    session = make_session("del-3", content={"summary": "old"})
    services.session_delete(session=session, actor=ACTOR)

    again, created = services.session_get_or_create(session_id="del-3")

    assert created and again.pk != session.pk and again.is_empty and again.version == 0


@pytest.mark.django_db(transaction=True)
def test_of_two_posts_filling_in_an_unknown_owner_at_once_the_first_to_commit_keeps_it(on_postgres):
    if not on_postgres:
        pytest.skip("SQLite has no row locks: its IMMEDIATE transactions cannot interleave")
    make_session("owners-race")
    filled, commit = threading.Event(), threading.Event()

    def first_post():
        with transaction.atomic():
            services.session_get_or_create(session_id="owners-race", user_id="u-first")
            filled.set()
            commit.wait(10)

    outcome: dict = {}

    def second_post():  # read the owner as unknown before the first committed, then waits for its row
        outcome["session"], _ = services.session_get_or_create(session_id="owners-race", user_id="u-second")

    one_queued_behind_the_other(first_post, second_post, holding=filled, release=commit)

    assert SessionContext.objects.get(session_id="owners-race").user_id == "u-first"
    assert outcome["session"].user_id == "u-first"
