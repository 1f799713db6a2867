"""Export and import: whole sessions move between deployments exactly, re-importing changes nothing, and a
session that differs here is refused, not merged."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from contexts import services
from contexts.models import FieldLock, Message, Proposal, Revision, SessionContext
from contexts.selectors.governance import session_document
from contexts.services import Actor
from contexts.services.exports import ImportResult, session_import
from contexts.services.locks import locks_set, locks_withhold, proposals_record
from tests.concurrency import once_before
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db

AGENT = Actor.system("key:agent")
SESSION_COLUMNS = ["session_id", "user_id", "agent_id", "team_id", "mode", "status", "summary", "goal", "plan",
                   "progress", "handoff_note", "handoff_reason", "handoff_requested_at", "assignee_id", "version",
                   "last_message_seq", "cursor_seq", "created_at", "updated_at"]
MESSAGE_COLUMNS = ["session__session_id", "seq", "role", "content", "idempotency_key", "author_id", "created_at"]
REVISION_COLUMNS = ["session__session_id", "version", "source", "actor", "actor_user_id", "reason", "snapshot",
                    "changed_fields", "created_at"]


def _conversations():
    """Two users' sessions with several versions, a staff-owned one, unicode, a reverted revision."""
    services.messages_post(session_id="ex-1", user_id="u-1", agent_id="bot", mode="planning", messages=[
        {"role": "user", "content": "Move us to PostgreSQL ✓", "idempotency_key": "k1"},
        {"role": "assistant", "content": "Plan:\n1. Dump\n2. Load", "idempotency_key": "k2"}])
    session = SessionContext.objects.get(session_id="ex-1")
    session = services.snapshot_update(session=session, expected_version=session.version, source="api", actor=AGENT,
                                       changes={"goal": "Move to PostgreSQL", "plan": ["Dump", "Load"]})
    session = services.snapshot_update(session=session, expected_version=session.version, source="api", actor=AGENT,
                                       changes={"progress": ["Dump"]}, reason="done one")
    services.snapshot_revert(session=session, to_version=1, expected_version=session.version, reason="undo",
                             actor=AGENT, source="api")
    staff = make_user("carol", superuser=True)
    other = make_session("ex-2", content={"summary": "Refund for a blender"}, user_id="u-2")
    other = services.handoff_request(session=other, reason="refund", actor=AGENT)
    other = services.handoff_claim(session=other, actor=Actor.for_user(staff))
    services.handoff_reply(session=other, content="Refunded.", actor=Actor.for_user(staff))
    make_session("ex-3")  # empty, version 0


def _stored() -> tuple[list, list, list]:
    return (list(SessionContext.objects.order_by("session_id").values_list(*SESSION_COLUMNS)),
            list(Message.objects.order_by("session__session_id", "seq").values_list(*MESSAGE_COLUMNS)),
            list(Revision.objects.order_by("session__session_id", "version").values_list(*REVISION_COLUMNS)))


def test_export_then_import_into_an_empty_database_reproduces_every_field(tmp_path, capsys):
    _conversations()
    before = _stored()
    assert len(before[2]) >= 6
    path = tmp_path / "sessions.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    assert len(path.read_text().splitlines()) == 3
    SessionContext.objects.all().delete()

    call_command("import_sessions", str(path), "--no-progress")

    assert "3 created, 0 unchanged (already here), 0 refused." in capsys.readouterr().out
    assert _stored() == before  # field by field: versions, seqs, times, snapshots, people


def test_the_export_command_says_how_many_it_wrote_and_refuses_a_file_it_cannot_write(tmp_path, capsys):
    # With --no-progress (as in cron and every script) it said "Exported 0 session(s)" after writing three, and an
    # output path in a missing directory stopped with a FileNotFoundError traceback.
    _conversations()
    path = tmp_path / "sessions.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    assert f"Exported 3 session(s) to {path}." in capsys.readouterr().out
    assert len(path.read_text().splitlines()) == 3
    with pytest.raises(CommandError, match="Cannot write"):
        call_command("export_sessions", "--output", str(tmp_path / "missing" / "sessions.jsonl"), "--no-progress")


def test_importing_twice_changes_nothing(tmp_path, capsys):
    _conversations()
    path = tmp_path / "sessions.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    before = _stored()
    call_command("import_sessions", str(path), "--no-progress")
    assert "0 created, 3 unchanged" in capsys.readouterr().out
    assert _stored() == before


def test_a_session_with_a_different_history_here_is_refused_with_a_line_and_left_as_it_is(tmp_path, capsys):
    _conversations()
    path = tmp_path / "sessions.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    services.messages_post(session_id="ex-1", messages=[{"role": "user", "content": "one more"}])
    before = _stored()
    with pytest.raises(CommandError, match="1 session"):
        call_command("import_sessions", str(path), "--no-progress")
    captured = capsys.readouterr()
    assert "line 1: session ex-1 refused: exists here with a different history" in captured.err
    assert "0 created, 2 unchanged (already here), 1 refused." in captured.out
    assert _stored() == before


def test_a_broken_line_is_refused_and_the_others_are_imported(tmp_path, capsys):
    _conversations()
    document = session_document(SessionContext.objects.get(session_id="ex-1"))
    SessionContext.objects.all().delete()
    bad_seq = json.loads(json.dumps(document))
    bad_seq["session"]["session_id"] = "ex-dup"
    bad_seq["messages"][1]["seq"] = bad_seq["messages"][0]["seq"]
    path = tmp_path / "mixed.jsonl"
    path.write_text("{not json\n" + json.dumps(bad_seq) + "\n" + json.dumps(document) + "\n")
    with pytest.raises(CommandError):
        call_command("import_sessions", str(path), "--no-progress")
    captured = capsys.readouterr()
    assert "line 1: refused: not JSON" in captured.err and "line 2: session ex-dup refused" in captured.err
    assert list(SessionContext.objects.values_list("session_id", flat=True)) == ["ex-1"]
    assert not Message.objects.filter(session__session_id="ex-dup").exists()


def test_people_unknown_here_are_imported_as_nobody_and_reimporting_still_matches():
    _conversations()
    document = session_document(SessionContext.objects.get(session_id="ex-2"))
    SessionContext.objects.all().delete()
    document["session"]["assignee"] = document["messages"][-1]["author"] = "nobody-here"
    assert session_import(document=document).outcome == "created"
    session = SessionContext.objects.get(session_id="ex-2")
    assert session.assignee_id is None and session.messages.last().author_id is None
    assert session_import(document=document).outcome == "unchanged"


# --- staff locks and pending proposals ----------------------------------------------------------------------------

LOCK_COLUMNS = ["session__session_id", "field", "reason", "actor", "actor_user_id", "created_at"]
PROPOSAL_COLUMNS = ["session__session_id", "field", "value", "created_at"]


def _locked():
    """ex-1 with its goal and plan locked by an editor and a pending proposal for the plan; ex-2 without locks."""
    _conversations()
    session = SessionContext.objects.get(session_id="ex-1")
    editor = make_user("edna")
    locks_set(session=session, fields=["goal", "plan"], reason="Agreed with the customer ✓",
              actor=Actor.for_user(editor))
    proposals_record(session, withheld={"plan": ["Dump", "Rewrite", "Load"]}, run=None)
    return editor


def _locks_stored() -> tuple[list, list]:
    return (list(FieldLock.objects.order_by("session__session_id", "field").values_list(*LOCK_COLUMNS)),
            list(Proposal.objects.order_by("session__session_id", "field").values_list(*PROPOSAL_COLUMNS)))


def test_locks_and_pending_proposals_come_back_with_who_and_when_and_still_hold_back_the_model(tmp_path, capsys):
    _locked()
    before, locks_before = _stored(), _locks_stored()
    assert len(locks_before[0]) == 2 and len(locks_before[1]) == 1
    path = tmp_path / "sessions.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    SessionContext.objects.all().delete()
    assert not FieldLock.objects.exists() and not Proposal.objects.exists()

    call_command("import_sessions", str(path), "--no-progress")

    assert "3 created, 0 unchanged (already here), 0 refused." in capsys.readouterr().out
    assert _stored() == before and _locks_stored() == locks_before
    # The next extraction may not write what staff locked: it would only propose.
    session = SessionContext.objects.get(session_id="ex-1")
    allowed, withheld = locks_withhold(session, values={"goal": "Another goal", "plan": ["Other"], "summary": "s"})
    assert allowed == {"summary": "s"} and set(withheld) == {"goal", "plan"}
    call_command("import_sessions", str(path), "--no-progress")  # again: nothing changes
    assert "0 created, 3 unchanged (already here), 0 refused." in capsys.readouterr().out
    assert _locks_stored() == locks_before


def test_a_lock_by_a_person_unknown_here_keeps_its_label_and_is_nobodys():
    _locked()
    document = session_document(SessionContext.objects.get(session_id="ex-1"))
    assert [(lock["field"], lock["actor"], lock["actor_user"]) for lock in document["locks"]] == [
        ("goal", "user:edna", "edna"), ("plan", "user:edna", "edna")]
    SessionContext.objects.all().delete()
    document["locks"][0]["actor_user"] = "nobody-here"
    assert session_import(document=document).outcome == "created"
    goal, plan = FieldLock.objects.order_by("field")
    assert (goal.actor, goal.actor_user_id) == ("user:edna", None)
    assert plan.actor_user.get_username() == "edna"
    assert session_import(document=document).outcome == "unchanged"


def test_a_document_from_before_locks_were_exported_still_imports_without_locks():
    _locked()
    document = session_document(SessionContext.objects.get(session_id="ex-1"))
    SessionContext.objects.all().delete()
    del document["locks"], document["proposals"]
    assert session_import(document=document).outcome == "created"
    assert SessionContext.objects.filter(session_id="ex-1").exists()
    assert not FieldLock.objects.exists() and not Proposal.objects.exists()


def _lock(**changes):
    return lambda d: d["locks"][0].update(changes)


def _proposal(**changes):
    return lambda d: d["proposals"][0].update(changes)


BAD_LOCKS = {
    "locks not a list": lambda d: d.update(locks={"field": "plan"}),
    "a lock not an object": lambda d: d["locks"].append("plan"),
    "a lock on a field that cannot be locked": _lock(field="handoff_note"),
    "a lock on an unknown field": _lock(field="mood"),
    "a field locked twice": lambda d: d["locks"].append(dict(d["locks"][0])),
    "a lock without a reason": _lock(reason="  "),
    "a lock with a reason not a string": _lock(reason=["agreed"]),
    "a lock without its time": lambda d: d["locks"][0].pop("created_at"),
    "a lock with a time without a zone": _lock(created_at="2024-05-01T10:00:00"),
    "a lock without who": _lock(actor=""),
    "a lock by a username not a string": _lock(actor_user=7),
    "proposals not a list": lambda d: d.update(proposals="plan"),
    "a proposal on an unknown field": _proposal(field="mood"),
    "a proposal without a value": lambda d: d["proposals"][0].pop("value"),
    "a plan proposal not a list of strings": _proposal(value="Dump then load"),
    "a goal proposal not a string": lambda d: d["proposals"][0].update(field="goal", value=["x"]),
    "a field proposed twice": lambda d: d["proposals"].append(dict(d["proposals"][0])),
    "a proposal with a bad time": _proposal(created_at="yesterday"),
}


@pytest.mark.parametrize("damage", BAD_LOCKS.values(), ids=BAD_LOCKS.keys())
def test_bad_locks_or_proposals_are_refused_and_nothing_of_the_session_is_kept(damage, tmp_path, capsys):
    _locked()
    document = session_document(SessionContext.objects.get(session_id="ex-1"))
    SessionContext.objects.all().delete()
    damage(document)

    result = session_import(document=document)

    assert result.outcome == "refused" and result.message.startswith("not a valid session document"), result
    assert not SessionContext.objects.exists() and not FieldLock.objects.exists() and not Proposal.objects.exists()
    assert not Message.objects.exists() and not Revision.objects.exists()
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(document) + "\n")
    with pytest.raises(CommandError, match="1 session"):
        call_command("import_sessions", str(path), "--no-progress")
    assert "line 1: session ex-1 refused: not a valid session document" in capsys.readouterr().err
    assert not SessionContext.objects.exists()


def _set(part: str, **changes):
    return lambda d: d[part].update(changes)


def _revision_snapshot(value):
    return lambda d: d["revisions"][0].update(snapshot=value)


PAST_9999_IN_UTC, BEFORE_1_IN_UTC = "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"

# Documents that contradict themselves or hold what no write here may hold: each was "created" before, and the
# session then answered 500 on its next post, write or revert, or served a plan that is not a list of strings.
BAD_DOCUMENTS = {
    "messages past last_message_seq": _set("session", last_message_seq=0, cursor_seq=0),
    "cursor past last_message_seq": _set("session", cursor_seq=99),
    "revisions past the version": _set("session", version=0),
    "a plan that is not a list": _set("session", plan={"a": 1}),
    "plan steps that are not strings": _set("session", plan=[1, 2]),
    "a goal over its bound": _set("session", goal="x" * 5000),
    "a revision snapshot that is not an object": _revision_snapshot("x"),
    "a revision plan that is a string": _revision_snapshot({"plan": "abc"}),
    # A null text, a mode or status that is none, a source that is none: stored, and then a revert to that version
    # or the session's staff page was a 500.
    "a revision summary that is null": lambda d: d["revisions"][0]["snapshot"].update(summary=None),
    "a revision goal that is a number": lambda d: d["revisions"][0]["snapshot"].update(goal=7),
    "a revision mode that is a list": lambda d: d["revisions"][0]["snapshot"].update(mode=["planning"]),
    "a revision status that is an object": lambda d: d["revisions"][0]["snapshot"].update(status={"s": 1}),
    "a revision source that is none": lambda d: d["revisions"][0].update(source="telepathy"),
    "a version twice": lambda d: d["revisions"].append(dict(d["revisions"][0])),
    "a seq that is a string": lambda d: d["messages"][0].update(seq="1"),
    "a seq too big to store": lambda d: (d["messages"][0].update(seq=2**70),
                                         d["session"].update(last_message_seq=2**70)),
    # In UTC past year 9999 or before year 1: PostgreSQL stored them, and then no read of the rows could load them.
    "a message time past year 9999 in UTC": lambda d: d["messages"][0].update(created_at=PAST_9999_IN_UTC),
    "a revision time before year 1 in UTC": lambda d: d["revisions"][0].update(created_at=BEFORE_1_IN_UTC),
    "a lock time past year 9999 in UTC": lambda d: d.update(locks=[
        {"field": "summary", "reason": "r", "actor": "a", "actor_user": None, "created_at": PAST_9999_IN_UTC}]),
    # PostgreSQL refused these and SQLite stored them, so an export of that SQLite database did not import on
    # PostgreSQL (and the API had never let such a message in).
    "a NUL character in a message": lambda d: d["messages"][0].update(content="Move us\x00 to PostgreSQL"),
    "a message role that is no role": lambda d: d["messages"][0].update(role="customer"),
    "a message content that is not a string": lambda d: d["messages"][0].update(content=["Move us"]),
    "a handoff event of no kind": lambda d: d.update(handoff_events=[
        {"kind": "escalated", "actor": "a", "actor_user": None, "note": "", "created_at": "2026-01-01T00:00:00Z"}]),
    "a handoff note with a NUL": lambda d: d.update(handoff_events=[
        {"kind": "note", "actor": "a", "actor_user": None, "note": "x\x00", "created_at": "2026-01-01T00:00:00Z"}]),
    "a handoff event without a time": lambda d: d.update(handoff_events=[
        {"kind": "note", "actor": "a", "actor_user": None, "note": "n", "created_at": None}]),
    # Stored on SQLite, refused by PostgreSQL: a file must import on every database alike.
    "a handoff actor with a NUL": lambda d: d.update(handoff_events=[
        {"kind": "note", "actor": "user:a\x00b", "actor_user": None, "note": "n",
         "created_at": "2026-01-01T00:00:00Z"}]),
}


@pytest.mark.parametrize("damage", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_a_document_that_contradicts_itself_is_refused_and_nothing_of_it_is_kept(damage):
    _conversations()
    document = json.loads(json.dumps(session_document(SessionContext.objects.get(session_id="ex-1"))))
    SessionContext.objects.all().delete()
    damage(document)

    result = session_import(document=document)

    assert result.outcome == "refused" and result.message.startswith("not a valid session document"), result
    assert not SessionContext.objects.exists() and not Message.objects.exists() and not Revision.objects.exists()


def test_lines_that_are_not_a_session_object_or_not_utf8_are_refused_and_the_rest_imported(tmp_path, capsys):
    _conversations()
    good = session_document(SessionContext.objects.get(session_id="ex-1"))
    SessionContext.objects.all().delete()
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"format": good["format"], "session": ["ex-x"], "messages": [], "revisions": []}).encode(),
             '{"format": "caf\xe9"}'.encode("latin-1"), json.dumps(good).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")

    with pytest.raises(CommandError, match="2 session"):
        call_command("import_sessions", str(path), "--no-progress")

    captured = capsys.readouterr()
    assert "line 1: session ? refused: not a valid session document: 'session' must be an object" in captured.err
    assert "line 2: refused: not UTF-8" in captured.err
    assert "1 created, 0 unchanged (already here), 2 refused." in captured.out
    assert list(SessionContext.objects.values_list("session_id", flat=True)) == ["ex-1"]


@pytest.mark.django_db(transaction=True)
def test_an_export_taken_while_the_agent_posts_is_one_moment_of_the_session_and_imports(on_postgres):
    if not on_postgres:
        pytest.skip("SQLite: the export's transaction holds the write lock, so the post this test waits for would "
                    "wait for the export")
    from contexts.models import Project

    services.messages_post(session_id="ex-live", user_id="u-live", messages=[
        {"role": "user", "content": "Move us to PostgreSQL"}, {"role": "assistant", "content": "1. Dump 2. Load"}])
    session = SessionContext.objects.get(session_id="ex-live")

    def post():  # another process: the agent's next turn commits meanwhile
        services.messages_post(session_id="ex-live", messages=[{"role": "user", "content": "Go on"}])
        services.snapshot_update(session=SessionContext.objects.get(pk=session.pk),
                                 expected_version=session.version, changes={"summary": "migrating"},
                                 source="api", actor=AGENT)

    with once_before(lambda sql: "contexts_message" in sql, post) as posted:
        document = session_document(session)

    assert posted
    session_part, seqs = document["session"], [m["seq"] for m in document["messages"]]
    assert max(seqs) == session_part["last_message_seq"], (seqs, session_part["last_message_seq"])
    assert [r["version"] for r in document["revisions"]][-1:] == ([session_part["version"]]
                                                                  if session_part["version"] else [])
    result = session_import(document=document, project=Project.objects.create(slug="copy", name="Copy"))
    assert result.outcome == "created", result.message


@pytest.mark.django_db(transaction=True)
def test_the_same_document_imported_twice_at_once_is_created_once_and_unchanged_once(on_postgres):
    if not on_postgres:
        pytest.skip("SQLite: the first import's transaction holds the write lock, so the second waits for it")
    _conversations()
    document = session_document(SessionContext.objects.get(session_id="ex-1"))
    SessionContext.objects.all().delete()
    other: list[ImportResult] = []

    def import_elsewhere():  # the same file, imported by a second process
        other.append(session_import(document=document))

    def creating(sql: str) -> bool:
        return sql.startswith('INSERT INTO "contexts_sessioncontext"')

    with once_before(creating, import_elsewhere) as raced:
        result = session_import(document=document)

    assert raced and [r.outcome for r in other] == ["created"]
    assert result.outcome == "unchanged", result.message
    assert SessionContext.objects.filter(session_id="ex-1").count() == 1


def test_export_and_import_keep_the_handoff_timeline_and_its_staff_notes(tmp_path, capsys):
    from contexts.models import HandoffEvent

    staff = make_user("carol")
    session = make_session("hx-1", content={"summary": "Refund for a blender"}, user_id="u-2")
    session = services.handoff_request(session=session, reason="refund", actor=AGENT)
    session = services.handoff_claim(session=session, actor=Actor.for_user(staff))
    services.handoff_add_note(session=session, note="Customer is angry; refund approved by Dana.",
                              actor=Actor.for_user(staff))
    columns = ("kind", "actor", "actor_user__username", "note", "created_at")
    before = list(HandoffEvent.objects.filter(session__session_id="hx-1").order_by("id").values_list(*columns))
    assert len(before) == 3
    path = tmp_path / "sessions.jsonl"
    call_command("export_sessions", "--output", str(path), "--no-progress")
    SessionContext.objects.all().delete()

    call_command("import_sessions", str(path), "--no-progress")

    after = list(HandoffEvent.objects.filter(session__session_id="hx-1").order_by("id").values_list(*columns))
    assert after == before  # kinds, who (the staff member by username), notes and times as they were
    call_command("import_sessions", str(path), "--no-progress")  # again: the same session, nothing added
    assert "0 created, 1 unchanged" in capsys.readouterr().out
    assert HandoffEvent.objects.filter(session__session_id="hx-1").count() == 3


def test_an_agents_read_key_never_gets_the_staffs_own_notes_from_the_export_api():
    from django.test import Client

    from tests.factories import make_api_key

    staff = make_user("carol")
    session = services.handoff_request(session=make_session("note-private", user_id="u-9"), reason="refund",
                                       actor=AGENT)
    services.handoff_add_note(session=session, note="INTERNAL: flagged for fraud review", actor=Actor.for_user(staff))
    _, raw = make_api_key("read", name="agent")
    client = Client(headers={"Authorization": f"Bearer {raw}"})

    one = client.get("/api/v1/sessions/note-private/export")
    users = client.get("/api/v1/users/u-9/export")

    assert one.status_code == users.status_code == 200
    assert [e["kind"] for e in one.json()["handoff_events"]] == ["requested"]  # the rest of the timeline stays
    assert "fraud review" not in one.content.decode()
    assert "fraud review" not in b"".join(users.streaming_content).decode()
