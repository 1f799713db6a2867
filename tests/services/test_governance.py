"""Retention and erasure: what goes, what stays, in batches, with an audit row of counts and no content."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection, models, transaction
from django.utils import timezone

from contexts import services
from contexts.extraction.runs import extraction_request
from contexts.models import (
    DataDeletion,
    Event,
    ExtractionRun,
    HandoffEvent,
    Message,
    Project,
    Revision,
    SessionContext,
    WebhookDelivery,
    WebhookEndpoint,
)
from contexts.services import Actor
from contexts.services.governance import sessions_purge, user_erase, user_id_digest
from tests.concurrency import in_another_connection
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

MARKER = "zq-marker-7c1e"
AGENT = Actor.system("key:agent")


def _plant(session_id: str, user_id: str) -> SessionContext:
    """A session holding the marker everywhere content goes: messages, snapshot, revisions, handoff events, feed
    events (a staff reply), webhook deliveries of those events, a run's error."""
    WebhookEndpoint.objects.get_or_create(url="https://hooks.example.com/in", project=Project.default())
    services.messages_post(session_id=session_id, user_id=user_id, messages=[
        {"role": "user", "content": f"my card is {MARKER}"}, {"role": "assistant", "content": f"noted {MARKER}"}])
    session = SessionContext.objects.get(session_id=session_id)
    session = services.snapshot_update(session=session, expected_version=session.version,
                                       changes={"summary": f"user {MARKER}", "plan": [f"step {MARKER}"]},
                                       source="api", actor=AGENT)
    session = services.handoff_request(session=session, reason=f"refund {MARKER}", actor=AGENT)
    person = make_user(f"staff-{session_id}", superuser=True)
    session = services.handoff_claim(session=session, actor=Actor.for_user(person))
    services.handoff_reply(session=session, content=f"hello {MARKER}", actor=Actor.for_user(person))
    run = extraction_request(session=session, trigger="api")
    # The marker as a failed model call would leave it (the provider's error quoting the input).
    ExtractionRun.objects.filter(pk=run.pk).update(status="failed", error=f"400: bad input {MARKER}")
    return session


def _rows_holding(marker: str) -> list[str]:
    """Every text and JSON column of every model of the app that holds the marker."""
    found = []
    for model in apps.get_app_config("contexts").get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, models.CharField | models.TextField):
                lookup = {f"{field.name}__contains": marker}
            elif isinstance(field, models.JSONField):
                # JSON containment is per key; as text, the whole document is searched.
                found += [f"{model.__name__}.{field.name}" for value in model.objects.values_list(field.name, flat=True)
                          if marker in str(value)]
                continue
            else:
                continue
            if model.objects.filter(**lookup).exists():
                found.append(f"{model.__name__}.{field.name}")
    return found


def test_erasing_a_user_leaves_none_of_their_content_in_any_table_and_keeps_other_users():
    _plant("er-1", "u-gone")
    _plant("er-2", "u-gone")
    kept = _plant("er-3", "u-stays")
    assert {"Message.content", "SessionContext.summary", "Revision.snapshot", "HandoffEvent.note",
            "Event.data", "ExtractionRun.error"} <= set(_rows_holding(MARKER))
    deliveries_kept = WebhookDelivery.objects.filter(event__session=kept).count()
    assert deliveries_kept > 0

    record = user_erase(user_id="u-gone", actor=Actor.system("test"))

    assert record.counts["sessions"] == 2
    assert record.counts["messages"] == 6  # two turns and a staff reply each
    assert record.counts["revisions"] > 0 and record.counts["events"] > 0 and record.counts["runs"] == 2
    assert record.counts["handoff_events"] == 4 and record.counts["webhook_deliveries"] > 0
    assert not SessionContext.objects.filter(user_id="u-gone").exists()
    # What is left is the other user's: each hit belongs to er-3.
    assert Message.objects.filter(content__contains=MARKER).exclude(session=kept).count() == 0
    assert Event.objects.exclude(session=kept).count() == 0
    assert WebhookDelivery.objects.count() == deliveries_kept
    user_erase(user_id="u-stays", actor=Actor.system("test"))
    assert _rows_holding(MARKER) == []
    # The audit rows hold counts and a digest of the user id, nothing of what was said (scanned above too).
    audit = DataDeletion.objects.get(pk=record.pk)
    assert audit.kind == "erasure" and audit.criteria == {"user_id_sha256": user_id_digest("u-gone")}
    assert "u-gone" not in str(audit.criteria) + str(audit.counts)


def test_erasing_twice_answers_zero_counts_the_second_time():
    _plant("twice-1", "u-twice")
    first = user_erase(user_id="u-twice", actor=Actor.system("test"))
    second = user_erase(user_id="u-twice", actor=Actor.system("test"))
    assert first.counts["sessions"] == 1
    assert set(second.counts.values()) == {0} and len(second.counts) == 10
    assert DataDeletion.objects.filter(kind="erasure").count() == 2


def test_a_blank_user_id_never_erases_the_sessions_that_have_no_user():
    make_session("anon-1")
    with pytest.raises(services.governance.InvalidInput):
        user_erase(user_id="  ", actor=Actor.system("test"))
    assert SessionContext.objects.filter(session_id="anon-1").exists()


def _age(session_ids, days: int) -> None:
    """Sessions (and their messages) as they would be after `days` without activity."""
    then = timezone.now() - timedelta(days=days)
    SessionContext.objects.filter(session_id__in=session_ids).update(updated_at=then)
    Message.objects.filter(session__session_id__in=session_ids).update(created_at=then)


def test_retention_deletes_exactly_what_is_older_than_the_bound_in_batches():
    old = [f"old-{i}" for i in range(7)]
    for session_id in old:
        services.messages_post(session_id=session_id, messages=[{"role": "user", "content": "hi"}])
    for session_id in ("new-1", "new-2"):
        make_session(session_id, content={"summary": "recent"})
    _age(old, 91)
    _age(["new-2"], 89)  # inside the bound
    batches = []

    counts, record = sessions_purge(older_than=timedelta(days=90), actor=Actor.system("test"), batch_size=2,
                                    progress=batches.append)

    assert batches == [2, 2, 2, 1]
    assert counts["sessions"] == 7 and counts["messages"] == 7
    assert set(SessionContext.objects.values_list("session_id", flat=True)) == {"new-1", "new-2"}
    audit = DataDeletion.objects.get(pk=record.pk)
    assert audit.kind == "retention" and audit.counts == counts and audit.criteria["older_than_seconds"] == 90 * 86400


def test_a_session_whose_conversation_went_on_without_a_new_snapshot_is_not_purged():
    make_session("talking", content={"summary": "old snapshot"})
    _age(["talking"], 100)
    services.messages_post(session_id="talking", messages=[{"role": "user", "content": "still here"}])
    counts, _ = sessions_purge(older_than=timedelta(days=90), actor=Actor.system("test"))
    assert counts["sessions"] == 0 and SessionContext.objects.filter(session_id="talking").exists()


@pytest.mark.django_db(transaction=True)
def test_a_message_that_commits_while_the_purge_takes_its_locks_keeps_the_session():
    if connection.vendor != "postgresql":
        pytest.skip("row locks and statement snapshots are PostgreSQL's")
    services.messages_post(session_id="back-again", messages=[{"role": "user", "content": "hi"}])
    _age(["back-again"], 100)
    session = SessionContext.objects.get(session_id="back-again")

    def message_committed_meanwhile():
        # A message that committed after the locking statement's snapshot was taken and before it reached the row:
        # that statement did not see it. (Its foreign key check would wait for the purge's row lock, so it is
        # written as one that got in just before: without that check.)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            Message.objects.create(session_id=session.pk, seq=2, role="user", content="I am back")

    ran = []

    def after_the_lock(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not ran and "FOR UPDATE" in sql:
            ran.append(True)
            in_another_connection(message_committed_meanwhile)
        return result

    with connection.execute_wrapper(after_the_lock):
        counts, _ = sessions_purge(older_than=timedelta(days=90), actor=Actor.system("test"))

    assert ran
    assert counts["sessions"] == 0
    assert list(Message.objects.filter(session__session_id="back-again").values_list("content", flat=True)) == [
        "hi", "I am back"]


def test_purge_command_dry_run_counts_and_deletes_nothing_then_deletes(capsys):
    make_session("cmd-old", content={"summary": "x"})
    _age(["cmd-old"], 120)
    call_command("purge_sessions", "--older-than", "90d", "--dry-run")
    assert "Would delete 1 sessions, 0 messages, 1 revisions" in capsys.readouterr().out
    assert SessionContext.objects.filter(session_id="cmd-old").exists()
    assert not DataDeletion.objects.exists()
    call_command("purge_sessions", "--older-than", "90d", "--batch-size", "1", "--no-progress")
    assert "Deleted 1 sessions" in capsys.readouterr().out
    assert not SessionContext.objects.filter(session_id="cmd-old").exists()


def test_the_periodic_purge_is_off_until_retention_days_is_set(settings):
    from contexts.tasks import purge_sessions

    make_session("beat-old")
    _age(["beat-old"], 400)
    settings.SESSIONCTX_RETENTION_DAYS = 0
    assert purge_sessions() == 0 and SessionContext.objects.filter(session_id="beat-old").exists()
    settings.SESSIONCTX_RETENTION_DAYS = 365
    assert purge_sessions() == 1 and not SessionContext.objects.filter(session_id="beat-old").exists()


def test_erase_user_command_prints_the_counts(capsys):
    _plant("cmd-er", "u-cmd")
    call_command("erase_user", "u-cmd")
    out = capsys.readouterr().out
    assert "Deleted 1 sessions, 3 messages" in out
    assert not HandoffEvent.objects.exists() and not Revision.objects.exists()


def test_erase_user_with_an_argument_that_is_not_utf8_is_a_command_error_and_deletes_nothing():
    # A shell in another encoding passes caf\xe9; Python reads argv with surrogateescape, so the id holds a lone
    # surrogate that no database can be asked about: a UnicodeEncodeError traceback before.
    _plant("cmd-er2", "u-cmd2")
    with pytest.raises(CommandError, match="user_id"):
        call_command("erase_user", "caf\udce9")
    assert SessionContext.objects.filter(session_id="cmd-er2").exists() and not DataDeletion.objects.exists()


def test_a_purge_that_finds_nothing_writes_no_audit_row():
    make_session("fresh")
    counts, record = sessions_purge(older_than=timedelta(days=90), actor=Actor.system("test"))
    assert record is None and set(counts.values()) == {0}
    assert not DataDeletion.objects.exists()
