"""The API's contract as seen from outside (#14): what a key without the read scope gets back, JSON errors on
every /api/ path, preconditions, query filters and session ids."""

from __future__ import annotations

import pytest

from contexts.services import Actor
from contexts.services.locks import locks_set, proposals_record
from tests.api.conftest import Agent, assert_error, counts, etag_of
from tests.factories import make_api_key, make_session

pytestmark = pytest.mark.django_db

SNAPSHOT_FIELDS = {"summary", "goal", "plan", "progress", "handoff_note"}
# What a write answers a key that may not read: enough to carry on writing (version, ETag) and to see the
# conversation's state, nothing of the snapshot or its owners.
WRITE_RECEIPT_FIELDS = {"session_id", "mode", "status", "version", "updated_at"}
SECRET = "Customer card ends 4242"


@pytest.fixture
def secret_session():
    return make_session("secret-1", content={"summary": SECRET, "goal": SECRET, "plan": [SECRET]},
                        user_id="u-secret", agent_id="a-secret")


@pytest.fixture
def writer():
    return Agent(make_api_key("write", name="write-only")[1])


def test_a_write_only_key_gets_the_version_and_status_of_its_writes_but_never_the_snapshot(secret_session,
                                                                                          writer):
    sid, first = secret_session.session_id, secret_session.version
    writes = [
        ("PUT", f"/api/v1/sessions/{sid}", {}),
        ("PATCH", f"/api/v1/sessions/{sid}/context", {"progress": ["Step one"]}),
        ("PUT", f"/api/v1/sessions/{sid}/context", {"summary": SECRET, "goal": SECRET, "plan": [SECRET]}),
        ("POST", f"/api/v1/sessions/{sid}/revisions/{first}/revert", {"reason": "back"}),
        ("POST", f"/api/v1/sessions/{sid}/handoff", {"reason": "refund"}),
        ("POST", f"/api/v1/sessions/{sid}/context/reset", {"reason": "over"}),
    ]
    for method, path, body in writes:
        response = writer.call(method, path, body, headers={"If-Match": f'"{secret_session.version}"'})
        assert response.status_code in (200, 201), (method, path, response.content)
        answer = response.json()
        assert set(answer) == WRITE_RECEIPT_FIELDS, (method, path, answer)
        assert SECRET.encode() not in response.content and b"u-secret" not in response.content
        secret_session.refresh_from_db()
        assert answer["version"] == secret_session.version and answer["status"] == secret_session.status
        assert response["ETag"] == etag_of(sid)
    assert secret_session.version == first + 4 and secret_session.status == "handoff_requested"


def test_a_write_only_key_sets_locks_but_never_sees_the_proposals_they_hold(secret_session, writer, agent):
    locks_set(session=secret_session, fields=["goal"], reason="agreed", actor=Actor.system("staff"))
    proposals_record(secret_session, withheld={"goal": "Proposed: " + SECRET}, run=None)
    assert_error(writer.get("/api/v1/sessions/secret-1/locks"), 403, "permission_denied")

    response = writer.put("/api/v1/sessions/secret-1/locks", {"fields": ["goal", "plan"], "reason": "both"})

    assert response.status_code == 200 and SECRET.encode() not in response.content
    assert [lock["field"] for lock in response.json()["locks"]] == ["goal", "plan"]
    assert response.json()["proposals"] == []
    # A key that may read gets the proposal.
    assert agent.get("/api/v1/sessions/secret-1/locks").json()["proposals"][0]["value"] == "Proposed: " + SECRET


def test_a_read_write_key_still_gets_the_whole_snapshot_back(secret_session, agent):
    response = agent.patch("/api/v1/sessions/secret-1/context", {"progress": []},
                           headers={"If-Match": f'"{secret_session.version}"'})
    assert response.status_code == 200
    assert response.json()["summary"] == SECRET and set(response.json()) >= SNAPSHOT_FIELDS
# --- every path under /api/ answers the JSON error shape -------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/runs/%0A", "/api/v1/sessions/x/%0A", "/api/%0A", "/api/v1/nowhere"])
def test_unknown_api_paths_answer_a_json_404(agent, path):
    assert_error(agent.get(path), 404, "not_found")


def test_a_wrong_method_answers_a_json_405(agent):
    assert_error(agent.post("/api/v1/sessions", {}), 405, "method_not_allowed")


def test_an_unacceptable_accept_header_answers_a_json_406(agent):
    make_session("s-406")
    assert_error(agent.get("/api/v1/sessions/s-406/context", headers={"Accept": "text/html"}), 406, "not_acceptable")


def test_a_request_django_refuses_before_any_view_answers_json_on_api_paths(agent):
    # A Host outside ALLOWED_HOSTS is refused by Django itself (handler400).
    assert_error(agent.get("/api/v1/sessions", headers={"Host": "evil.example"}), 400)
    page = agent.get("/sessions/", headers={"Host": "evil.example"})
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


def test_an_unknown_staff_path_still_answers_the_html_page(admin_client):
    response = admin_client.get("/nowhere/%0A")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
def test_authentication_comes_before_content_negotiation():
    response = Agent().get("/api/v1/sessions", headers={"Accept": "text/html"})
    assert_error(response, 401, "not_authenticated")


# --- smaller slips ------------------------------------------------------------------------------------------


def test_an_empty_prompt_is_still_text_plain(reader):
    make_session("empty-prompt")
    response = reader.get("/api/v1/sessions/empty-prompt/context/prompt")
    assert response.status_code == 200 and response.content == b""
    assert response["Content-Type"] == "text/plain; charset=utf-8"


def test_a_weak_etag_never_matches_a_write(agent):
    session = make_session("weak-1", content={"summary": "kept"})
    before = counts()
    response = agent.patch("/api/v1/sessions/weak-1/context", {"summary": "changed"},
                           headers={"If-Match": f'W/"{session.version}"'})
    error = assert_error(response, 412, "version_conflict")
    assert error["details"]["current_version"] == session.version
    session.refresh_from_db()
    assert session.summary == "kept" and counts() == before


@pytest.mark.parametrize("query", ["user_id=", "user_id=%20", "agent_id=", "agent_id=%20%20"])
def test_a_blank_owner_filter_is_refused_however_it_is_blank(reader, query):
    error = assert_error(reader.get(f"/api/v1/sessions?{query}"), 400, "invalid")
    assert set(error["details"]["fields"]) == {query.split("=")[0]}


@pytest.mark.parametrize("path", ["/api/v1/sessions?agentid=bot-a", "/api/v1/sessions/mis-1/messages?after=1",
                                  "/api/v1/events?session=mis-1", "/api/v1/sessions/mis-1/context?fersh=true"])
def test_a_misspelled_filter_is_refused_instead_of_listing_everything(reader, path):
    make_session("mis-1", agent_id="bot-a")
    make_session("mis-2", agent_id="bot-b")
    error = assert_error(reader.get(path), 400, "invalid")
    misspelled = path.split("?")[1].split("=")[0]
    assert list(error["details"]["fields"]) == [misspelled]
    assert "Unknown query parameter" in error["details"]["fields"][misspelled][0]


@pytest.mark.parametrize("path", ["/api/v1/sessions/mis-1/revisions?limt=1",
                                  "/api/v1/sessions/mis-1/runs?status=failed"])
def test_the_revisions_and_runs_lists_refuse_a_parameter_they_do_not_know_as_the_other_lists_do(reader, path):
    # docs/api.md: on every list, a parameter the list does not know is a 400, never ignored (a misspelled
    # `limt=1` got a full page, and `status=failed` on /runs listed every run as if it filtered them).
    make_session("mis-1")
    error = assert_error(reader.get(path), 400, "invalid")
    unknown = path.split("?")[1].split("=")[0]
    assert list(error["details"]["fields"]) == [unknown]
    assert "Unknown query parameter" in error["details"]["fields"][unknown][0]
    base = path.split("?")[0]
    assert reader.get(f"{base}?limit=1&format=json").status_code == 200


def test_the_pager_parameters_are_not_taken_for_filters(reader):
    for n in range(3):
        make_session(f"page-{n}", agent_id="bot-a")
    first = reader.get("/api/v1/sessions?agent_id=bot-a&limit=2")
    assert first.status_code == 200 and len(first.json()["results"]) == 2
    rest = reader.get(first.json()["next"])
    assert rest.status_code == 200 and len(rest.json()["results"]) == 1
    assert reader.get("/api/v1/sessions?format=json").status_code == 200


@pytest.mark.parametrize("session_id", [".", "..", "..."])
def test_session_ids_of_dots_only_are_refused(agent, session_id):
    before = counts()
    assert_error(agent.put(f"/api/v1/sessions/{session_id}", {}), 400, "invalid_session_id")
    assert_error(agent.post(f"/api/v1/sessions/{session_id}/messages",
                            {"messages": [{"role": "user", "content": "hi"}]}), 400, "invalid_session_id")
    assert counts() == before


@pytest.mark.parametrize("session_id", ["a.b", ".a", "a..", "._"])
def test_session_ids_with_dots_and_more_are_still_fine(agent, session_id):
    assert agent.put(f"/api/v1/sessions/{session_id}", {}).status_code == 201


# --- a cursor that decodes but names no position -----------------------------------------------------------------


@pytest.mark.parametrize("path,position", [("revisions", "abc"), ("messages", "abc"), ("runs", "2026-13-45"),
                                           ("runs", "9" * 40)])
def test_a_tampered_list_cursor_is_a_404_saying_it_is_the_cursor(agent, path, position):
    import base64
    from urllib.parse import quote

    make_session("cur-1", content={"goal": "g"})
    cursor = quote(base64.b64encode(f"p={position}".encode()).decode())
    # "Invalid cursor" alone read as "no such session" (the session is there); the message says it is the cursor.
    for bad in (cursor, "abc"):
        error = assert_error(agent.get(f"/api/v1/sessions/cur-1/{path}?cursor={bad}"), 404, "not_found")
        assert "not one this list gave" in error["message"]
    assert agent.get(f"/api/v1/sessions/cur-1/{path}").status_code == 200


@pytest.mark.parametrize("query", ["sessions?status=active&status=human", "sessions?limit=2&limit=1",
                                   "sessions/rep-1/messages?after_seq=0&after_seq=1", "events?after=0&after=5",
                                   "sessions/rep-1/context?fresh=false&fresh=true"])
def test_a_query_parameter_given_twice_is_refused_not_read_as_its_last_value(reader, query):
    # `status=active&status=human` listed the human ones only, as if `active` had not been asked for.
    make_session("rep-1")
    name = query.split("?")[1].split("=")[0]
    error = assert_error(reader.get(f"/api/v1/{query}"), 400, "invalid")
    assert error["details"]["fields"] == {name: ["Given more than once: give it once."]}


@pytest.mark.parametrize("query", ["events?cursor=abc", "sessions/rep-2/context?limit=abc"])
def test_a_pager_parameter_on_an_answer_that_has_no_pager_is_refused_not_ignored(reader, query):
    make_session("rep-2")
    name = query.split("?")[1].split("=")[0]
    error = assert_error(reader.get(f"/api/v1/{query}"), 400, "invalid")
    assert list(error["details"]["fields"]) == [name]


@pytest.mark.parametrize("path", ["sessions/fmt-1/context", "sessions/fmt-1/context/prompt", "sessions"])
def test_an_unknown_format_is_a_406_naming_the_formats_not_a_404(reader, path):
    # ?format=xml was a 404 "Not found." for a session that is there.
    make_session("fmt-1")
    error = assert_error(reader.get(f"/api/v1/{path}?format=xml"), 406, "not_acceptable")
    assert "json" in error["message"] and "xml" in error["message"]
    assert reader.get(f"/api/v1/{path}?format=json").status_code == 200
    assert_error(Agent().get(f"/api/v1/{path}?format=xml"), 401)  # who you are comes first, as for Accept


def test_a_nul_character_is_refused_once_per_field_with_nothing_else_said(agent):
    make_session("nul-1", content={"summary": "kept", "plan": ["Book"]})
    before = counts()
    nul = "Null characters are not allowed."

    context = assert_error(agent.patch("/api/v1/sessions/nul-1/context",
                                       {"summary": "a\x00", "plan": ["b\x00"], "reason": "c\x00"},
                                       headers={"If-Match": '"1"'}), 400, "invalid")
    messages = assert_error(agent.post("/api/v1/sessions/nul-1/messages", {"messages": [
        {"role": "user", "content": "d\x00", "idempotency_key": "e\x00"}]}), 400, "invalid")

    # Each once: it was said twice, or with a "May not be blank." for a value that is not blank.
    assert context["details"]["fields"] == {"summary": [nul], "plan": {"0": [nul]}, "reason": [nul]}
    assert messages["details"]["fields"] == {"messages": {"0": {"content": [nul], "idempotency_key": [nul]}}}
    assert counts() == before
    assert assert_error(agent.patch("/api/v1/sessions/nul-1/context", {"plan": ["  "]}, headers={"If-Match": '"1"'}),
                        400)["details"]["fields"] == {"plan": {"0": ["This field may not be blank."]}}
