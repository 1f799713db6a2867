"""Governance per project (#16): retention by each project's own period, erasure of an end user within one
project, and export → import of whole projects (into an emptied database, into another project, twice)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from contexts import services
from contexts.extraction.runs import extraction_request
from contexts.models import DataDeletion, Message, Project, Revision, SessionContext
from contexts.selectors.governance import session_document
from contexts.services import Actor
from contexts.services.exports import session_import
from contexts.services.governance import sessions_purge, sessions_purge_by_setting, user_erase
from contexts.tasks import purge_sessions
from tests.factories import make_user

pytestmark = pytest.mark.django_db

AGENT = Actor.system("key:agent")
SESSION_COLUMNS = ["project__slug", "session_id", "user_id", "agent_id", "team_id", "mode", "status", "summary",
                   "goal", "plan", "progress", "handoff_note", "handoff_reason", "handoff_requested_at", "assignee_id",
                   "version", "last_message_seq", "cursor_seq", "update_policy", "created_at", "updated_at"]
MESSAGE_COLUMNS = ["session__project__slug", "session__session_id", "seq", "role", "content", "idempotency_key",
                   "author_id", "created_at"]
REVISION_COLUMNS = ["session__project__slug", "session__session_id", "version", "source", "actor", "actor_user_id",
                    "reason", "snapshot", "changed_fields", "created_at"]


def project(slug: str, **fields) -> Project:
    found = services.project_get_or_create(slug=slug)[0]
    if fields:
        Project.objects.filter(pk=found.pk).update(**fields)
        found.refresh_from_db()
    return found


def conversation(project: Project, session_id: str, *, user_id: str = "", words: str = "hello") -> SessionContext:
    services.messages_post(session_id=session_id, project=project, user_id=user_id or None, mode="planning",
                           messages=[{"role": "user", "content": f"{words} ✓", "idempotency_key": f"{session_id}-1"},
                                     {"role": "assistant", "content": f"{words}:\n1. do it"}])
    session = SessionContext.objects.get(project=project, session_id=session_id)
    session = services.snapshot_update(session=session, expected_version=session.version, source="api", actor=AGENT,
                                       changes={"goal": f"{words} goal", "plan": ["one", "two"]})
    return services.snapshot_update(session=session, expected_version=session.version, source="api", actor=AGENT,
                                    changes={"progress": ["one"]}, reason="done one")


def age(project: Project, session_ids, days: int) -> None:
    """The sessions (and their messages) as they would be after `days` without activity."""
    then = timezone.now() - timedelta(days=days)
    SessionContext.objects.filter(project=project, session_id__in=session_ids).update(updated_at=then)
    Message.objects.filter(session__project=project, session__session_id__in=session_ids).update(created_at=then)


def ids(project: Project) -> set[str]:
    return set(SessionContext.objects.filter(project=project).values_list("session_id", flat=True))


# --- retention ---------------------------------------------------------------------------------------------------


def test_retention_goes_by_each_projects_period_in_batches_with_an_audit_row_per_project(settings):
    settings.SESSIONCTX_RETENTION_DAYS = 0  # off for projects without a period of their own
    settings.SESSIONCTX_DELETE_BATCH_SIZE = 2
    a = project("ret-a", retention_days=30)
    b = project("ret-b")  # no period: the global one, off
    c = project("ret-c", retention_days=60)
    old = [f"old-{i}" for i in range(7)]
    for p in (a, b, c):
        for session_id in [*old, "new-1", "new-2"]:
            conversation(p, session_id)
        age(p, old, 61)
        age(p, ["new-2"], 29)  # inside both periods

    deleted = purge_sessions()  # what celery beat runs

    assert deleted == 14
    assert ids(a) == ids(c) == {"new-1", "new-2"}
    assert ids(b) == {*old, "new-1", "new-2"}
    audits = {r.project.slug: r for r in DataDeletion.objects.select_related("project")}
    assert set(audits) == {"ret-a", "ret-c"}
    for slug in ("ret-a", "ret-c"):
        counts = audits[slug].counts
        assert audits[slug].kind == "retention" and audits[slug].actor == "retention"
        assert (counts["sessions"], counts["messages"], counts["revisions"]) == (7, 14, 14), (slug, counts)
    assert audits["ret-a"].criteria["older_than_seconds"] == 30 * 86400
    assert audits["ret-c"].criteria["older_than_seconds"] == 60 * 86400
    # A project whose period is 0 is left alone even with the global period on.
    Project.objects.filter(pk=b.pk).update(retention_days=0)
    settings.SESSIONCTX_RETENTION_DAYS = 1
    assert sessions_purge_by_setting()["sessions"] == 0 and len(ids(b)) == 9


def test_a_retention_period_longer_than_the_calendar_deletes_nothing_and_stops_no_other_projects_purge(settings):
    # A project kept "for ever" (1,000,000 days, or the column's maximum) made the hourly purge stop with an
    # OverflowError at that project, so the projects after it were never purged either.
    settings.SESSIONCTX_RETENTION_DAYS = 0
    forever = project("ret-forever", retention_days=1_000_000)
    column_max = project("ret-column-max", retention_days=2**31 - 1)
    short = project("ret-short", retention_days=30)
    for p in (forever, column_max, short):
        conversation(p, "old")
        age(p, ["old"], 61)

    assert purge_sessions() == 1

    assert ids(forever) == ids(column_max) == {"old"} and ids(short) == set()
    settings.SESSIONCTX_RETENTION_DAYS = 1_000_000
    Project.objects.filter(pk=short.pk).update(retention_days=None)
    assert sessions_purge_by_setting()["sessions"] == 0


def test_the_purge_command_refuses_an_age_past_the_calendar_without_a_traceback():
    conversation(project("default"), "cmd-old")
    for older_than in ("3000000d", "99999999999d", "99999999999999999999s"):
        with pytest.raises(CommandError, match="--older-than"):
            call_command("purge_sessions", "--older-than", older_than, "--no-progress")
    assert ids(project("default")) == {"cmd-old"}


def test_a_purge_of_one_project_goes_in_batches_and_leaves_the_other_projects_old_sessions():
    a, b = project("ret-a"), project("ret-b")
    old = [f"old-{i}" for i in range(7)]
    for p in (a, b):
        for session_id in [*old, "new-1"]:
            conversation(p, session_id)
        age(p, old, 91)
    batches = []

    counts, record = sessions_purge(older_than=timedelta(days=90), actor=Actor.system("test"), project=a,
                                    batch_size=2, progress=batches.append)

    assert batches == [2, 2, 2, 1]
    assert counts["sessions"] == 7 and ids(a) == {"new-1"} and len(ids(b)) == 8
    assert record.project == a and record.counts == counts


def test_the_purge_command_with_project_deletes_that_projects_sessions_only(capsys):
    a, b = project("ret-a"), project("ret-b")
    for p in (a, b):
        conversation(p, "cmd-old")
        age(p, ["cmd-old"], 120)
    call_command("purge_sessions", "--older-than", "90d", "--project", "ret-b", "--batch-size", "1", "--no-progress")
    assert "Deleted 1 sessions" in capsys.readouterr().out
    assert ids(a) == {"cmd-old"} and ids(b) == set()
    assert DataDeletion.objects.get().project == b


# --- erasure -------------------------------------------------------------------------------------------------------


def test_erasing_a_user_in_one_project_leaves_the_same_user_id_in_another_alone(capsys):
    a, b = project("er-a"), project("er-b")
    conversation(a, "chat-1", user_id="u-42", words="alpha")
    conversation(a, "chat-2", user_id="u-42", words="alpha")
    conversation(b, "chat-1", user_id="u-42", words="bravo")
    b_rows = (list(SessionContext.objects.filter(project=b).values()),
              list(Message.objects.filter(session__project=b).values()),
              list(Revision.objects.filter(session__project=b).values()))

    record = user_erase(user_id="u-42", project=a, actor=Actor.system("test"))

    assert record.project == a and record.counts["sessions"] == 2 and record.counts["messages"] == 4
    assert ids(a) == set()
    assert (list(SessionContext.objects.filter(project=b).values()),
            list(Message.objects.filter(session__project=b).values()),
            list(Revision.objects.filter(session__project=b).values())) == b_rows
    # The command names the project too; B's user goes only when asked for in B.
    call_command("erase_user", "u-42", "--project", "er-a")
    assert "Deleted 0 sessions" in capsys.readouterr().out and ids(b) == {"chat-1"}
    call_command("erase_user", "u-42", "--project", "er-b")
    assert "Deleted 1 sessions" in capsys.readouterr().out and ids(b) == set()


# --- export and import -------------------------------------------------------------------------------------------


def projects_data():
    """Two projects (and `default`) with the same session ids, a reverted revision, a staff-owned session, a
    session with an update policy of its own."""
    a, b = project("ex-a", name="Project Alpha"), project("ex-b", name="Project Bravo")
    staff = make_user("carol", superuser=True)
    for p, words in ((a, "alpha"), (b, "bravo")):
        session = conversation(p, "chat-1", user_id="u-1", words=words)
        services.snapshot_revert(session=session, to_version=1, expected_version=session.version, reason="undo",
                                 actor=AGENT, source="api")
        other = conversation(p, "chat-2", user_id="u-2", words=f"{words} refund")
        other = services.handoff_request(session=other, reason="refund", actor=AGENT)
        other = services.handoff_claim(session=other, actor=Actor.for_user(staff))
        services.handoff_reply(session=other, content=f"{words}: refunded.", actor=Actor.for_user(staff))
        extraction_request(session=other, trigger="api")
        services.session_get_or_create(session_id="empty", project=p, update_policy="every_n_turns:3")
    conversation(Project.default(), "chat-1", user_id="u-1", words="default")


def stored(*, where: dict | None = None) -> tuple[list, list, list]:
    where = where or {}
    return (list(SessionContext.objects.filter(**where).order_by("project__slug", "session_id")
                 .values_list(*SESSION_COLUMNS)),
            list(Message.objects.filter(**{f"session__{k}": v for k, v in where.items()})
                 .order_by("session__project__slug", "session__session_id", "seq").values_list(*MESSAGE_COLUMNS)),
            list(Revision.objects.filter(**{f"session__{k}": v for k, v in where.items()})
                 .order_by("session__project__slug", "session__session_id", "version")
                 .values_list(*REVISION_COLUMNS)))


def test_export_then_import_into_an_emptied_database_reproduces_every_project_exactly(tmp_path, capsys):
    projects_data()
    before = stored()
    names_before = dict(Project.objects.values_list("slug", "name"))
    assert len(before[0]) == 7 and len(before[2]) >= 14
    path = tmp_path / "all.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    assert len(path.read_text().splitlines()) == 7
    # Empty it with the service (everything is older than a cutoff a day ahead), then the projects themselves.
    counts, _ = sessions_purge(older_than=timedelta(seconds=1), now=timezone.now() + timedelta(days=1),
                               actor=Actor.system("test"))
    assert counts["sessions"] == 7
    Project.objects.all().delete()
    assert not SessionContext.objects.exists() and not Message.objects.exists() and not Revision.objects.exists()

    call_command("import_sessions", str(path), "--no-progress")

    assert "7 created, 0 unchanged (already here), 0 refused." in capsys.readouterr().out
    assert stored() == before  # field by field: projects, versions, seqs, times, snapshots, people
    assert dict(Project.objects.values_list("slug", "name")) == names_before

    call_command("import_sessions", str(path), "--no-progress")  # again: nothing changes
    assert "0 created, 7 unchanged (already here), 0 refused." in capsys.readouterr().out
    assert stored() == before


def test_import_with_project_puts_a_projects_export_into_that_project_and_reimporting_changes_nothing(
        tmp_path, capsys):
    projects_data()
    a_before = stored(where={"project__slug": "ex-a"})
    path = tmp_path / "a.jsonl"
    call_command("export_sessions", "--project", "ex-a", "--output", str(path), "--no-progress")
    assert len(path.read_text().splitlines()) == 3

    call_command("import_sessions", str(path), "--project", "ex-copy", "--no-progress")
    assert "3 created, 0 unchanged (already here), 0 refused." in capsys.readouterr().out
    copied = stored(where={"project__slug": "ex-copy"})
    strip = lambda rows: [row[1:] for row in rows]  # noqa: E731 - all but the project
    assert [strip(part) for part in copied] == [strip(part) for part in a_before]
    assert {row[0] for row in copied[0]} == {"ex-copy"}
    assert stored(where={"project__slug": "ex-a"}) == a_before  # the source is untouched

    call_command("import_sessions", str(path), "--project", "ex-copy", "--no-progress")
    assert "0 created, 3 unchanged (already here), 0 refused." in capsys.readouterr().out
    assert stored(where={"project__slug": "ex-copy"}) == copied
    # The same file into B, which has sessions of those ids with another history: refused, B left alone.
    b_before = stored(where={"project__slug": "ex-b"})
    with pytest.raises(CommandError, match="3 session"):
        call_command("import_sessions", str(path), "--project", "ex-b", "--no-progress")
    assert "0 created, 0 unchanged (already here), 3 refused." in capsys.readouterr().out
    assert stored(where={"project__slug": "ex-b"}) == b_before


def test_import_with_project_and_a_file_it_cannot_read_is_a_command_error_and_creates_no_project(tmp_path):
    # The project was created first: a mistyped path left an empty project behind.
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_sessions", str(tmp_path / "missing.jsonl"), "--project", "ex-new", "--no-progress")
    assert not Project.objects.filter(slug="ex-new").exists()


# --- a project's settings travel with its sessions --------------------------------------------------------------

SETTINGS = ["slug", "name", "retention_days", "daily_token_budget"]


def test_a_project_created_by_an_import_takes_the_exported_retention_and_budget(tmp_path, capsys, settings):
    settings.SESSIONCTX_RETENTION_DAYS = 0  # the new instance has no period of its own
    projects_data()
    Project.objects.filter(slug="ex-a").update(retention_days=30, daily_token_budget=50_000)
    Project.objects.filter(slug="ex-b").update(retention_days=0)  # kept for ever on purpose
    before = list(Project.objects.order_by("slug").values_list(*SETTINGS))
    path = tmp_path / "all.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    sessions_purge(older_than=timedelta(seconds=1), now=timezone.now() + timedelta(days=1),
                   actor=Actor.system("test"))
    Project.objects.all().delete()

    call_command("import_sessions", str(path), "--no-progress")

    assert "7 created, 0 unchanged (already here), 0 refused." in capsys.readouterr().out
    assert list(Project.objects.order_by("slug").values_list(*SETTINGS)) == before
    # So ex-a's sessions untouched for 31 days go, as they would have where they came from.
    age(Project.objects.get(slug="ex-a"), ["chat-1"], 31)
    assert sessions_purge_by_setting()["sessions"] == 1
    assert ids(Project.objects.get(slug="ex-a")) == {"chat-2", "empty"}


def test_an_import_never_changes_the_settings_of_a_project_that_is_already_here(tmp_path, capsys):
    projects_data()
    Project.objects.filter(slug="ex-a").update(retention_days=30, daily_token_budget=50_000)
    path = tmp_path / "a.jsonl"
    call_command("export_sessions", "--project", "ex-a", "--output", str(path), "--no-progress")
    sessions_purge(older_than=timedelta(seconds=1), now=timezone.now() + timedelta(days=1),
                   actor=Actor.system("test"), project=Project.objects.get(slug="ex-a"))
    Project.objects.filter(slug="ex-a").update(name="Alpha here", retention_days=90, daily_token_budget=None)
    project("ex-copy", retention_days=7)

    call_command("import_sessions", str(path), "--no-progress")
    call_command("import_sessions", str(path), "--project", "ex-copy", "--no-progress")
    call_command("import_sessions", str(path), "--project", "ex-new", "--no-progress")  # made by the command

    assert capsys.readouterr().out.count("3 created, 0 unchanged (already here), 0 refused.") == 3
    assert list(Project.objects.filter(slug__in=["ex-a", "ex-copy", "ex-new"]).order_by("slug")
                .values_list(*SETTINGS)) == [("ex-a", "Alpha here", 90, None), ("ex-copy", "ex-copy", 7, None),
                                             ("ex-new", "ex-new", None, None)]


def test_a_document_from_before_project_settings_were_exported_still_imports():
    a = project("ex-a", name="Project Alpha", retention_days=30)
    document = session_document(conversation(a, "chat-1"))
    del document["project_settings"]
    SessionContext.objects.all().delete()
    a.delete()
    assert session_import(document=document).outcome == "created"
    assert list(Project.objects.filter(slug="ex-a").values_list(*SETTINGS)) == [
        ("ex-a", "Project Alpha", None, None)]


BAD_SETTINGS = {
    "not an object": ["retention_days", 30],
    "a negative period": {"retention_days": -1, "daily_token_budget": None},
    "a period as text": {"retention_days": "30", "daily_token_budget": None},
    "a period as a boolean": {"retention_days": True, "daily_token_budget": None},
    "a fractional budget": {"retention_days": None, "daily_token_budget": 1.5},
    "a period too large to store": {"retention_days": 2**31, "daily_token_budget": None},
    "a budget too large to store": {"retention_days": None, "daily_token_budget": 2**63},
}


@pytest.mark.parametrize("bad", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_bad_project_settings_are_refused_and_create_no_project_and_no_session(bad, tmp_path, capsys):
    a = project("ex-a", name="Project Alpha", retention_days=30)
    document = session_document(conversation(a, "chat-1"))
    SessionContext.objects.all().delete()
    a.delete()
    document["project_settings"] = bad

    result = session_import(document=document)

    assert result.outcome == "refused" and "project_settings" in result.message, result
    assert not Project.objects.filter(slug="ex-a").exists() and not SessionContext.objects.exists()
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(document) + "\n")
    with pytest.raises(CommandError, match="1 session"):
        call_command("import_sessions", str(path), "--no-progress")
    assert "line 1: session chat-1 refused: not a valid session document" in capsys.readouterr().err
    assert not Project.objects.filter(slug="ex-a").exists()
