"""Malformed JSON, wrong types, oversize bodies, bad session ids, wrong methods and paths: one error shape."""

from __future__ import annotations

import json

import pytest

from contexts.api.errors import api_exception_handler
from contexts.models import SessionContext
from tests.api.conftest import assert_error, counts
from tests.factories import make_session

pytestmark = pytest.mark.django_db

BAD_SESSION_IDS = ["has%20space", "caf%C3%A9", "semi;colon", "quote%27s", "star*", "x" * 256, "tab%09id",
                   "percent%25"]


@pytest.mark.parametrize("session_id", BAD_SESSION_IDS)
def test_a_bad_session_id_is_400_and_nothing_is_stored(agent, session_id):
    make_session("fine-1")
    before = counts()
    for method, path, body in (
        ("PUT", "", {}),
        ("POST", "/messages", {"messages": [{"role": "user", "content": "hi"}]}),
        ("GET", "/context", None),
        ("PATCH", "/context", {"summary": "x", "version": 0}),
        ("POST", "/handoff", {"reason": "x"}),
    ):
        error = assert_error(agent.call(method, f"/api/v1/sessions/{session_id}{path}", body), 400,
                             "invalid_session_id")
        assert "A-Z a-z 0-9" in error["message"]
    assert counts() == before


def test_the_longest_allowed_session_id_and_every_allowed_character_work(agent):
    for session_id in ("a" * 255, "Az09._:@-"):
        assert agent.put(f"/api/v1/sessions/{session_id}").status_code == 201
    assert SessionContext.objects.filter(session_id="a" * 255).exists()


@pytest.mark.parametrize("raw", ['{"summary": ', "{'summary': 'x'}", "summary=x", '{"summary": NaN, "version": 0}',
                                 "\xff\xfe"])
def test_malformed_json_is_400_parse_error_and_changes_nothing(agent, raw):
    make_session("json-1", content={"summary": "kept"})
    before = counts()
    response = agent.patch("/api/v1/sessions/json-1/context", raw=raw.encode("latin-1"), headers={"If-Match": '"1"'})
    assert_error(response, 400, "parse_error")
    assert counts() == before
    assert SessionContext.objects.get(session_id="json-1").summary == "kept"


@pytest.mark.parametrize("charset", ["base64", "rot13", "zlib", "hex"])
def test_a_charset_that_is_not_a_text_encoding_is_400_parse_error_and_changes_nothing(agent, charset):
    make_session("json-3", content={"summary": "kept"})
    before = counts()
    response = agent.patch("/api/v1/sessions/json-3/context", raw='{"summary": "x"}',
                           content_type=f"application/json; charset={charset}", headers={"If-Match": '"1"'})
    error = assert_error(response, 400, "parse_error")
    assert charset in error["message"]
    assert counts() == before
    assert SessionContext.objects.get(session_id="json-3").summary == "kept"


def test_more_query_parameters_than_django_reads_is_400_in_the_error_shape_and_changes_nothing(agent, settings):
    # Django refuses to parse a query string of more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters (1000); outside
    # the API that is its 400 page.
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 20
    make_session("many-1", content={"summary": "kept"})
    before = counts()
    query = "&".join(f"p{i}=1" for i in range(21))
    for method, path, body in (("GET", "/api/v1/sessions", None), ("GET", "/api/v1/events", None),
                               ("GET", "/api/v1/sessions/many-1/context", None),
                               ("PATCH", "/api/v1/sessions/many-1/context", {"summary": "x", "version": 1}),
                               ("PUT", "/api/v1/sessions/many-2", {})):
        assert_error(agent.call(method, f"{path}?{query}", body), 400, "bad_request")
    assert counts() == before
    assert SessionContext.objects.get(session_id="many-1").summary == "kept"


def test_a_json_body_that_is_not_an_object_is_400(agent):
    make_session("json-2")
    for raw in ("[]", '"text"', "3", "null"):
        assert_error(agent.patch("/api/v1/sessions/json-2/context", raw=raw, headers={"If-Match": '"0"'}), 400)


def test_a_body_that_is_not_json_is_415(agent):
    make_session("form-1")
    response = agent.post("/api/v1/sessions/form-1/handoff", raw="reason=x",
                          content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")
    assert SessionContext.objects.get(session_id="form-1").status == "active"


def test_an_oversize_body_is_413_and_stores_nothing(agent, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = counts()
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 20_000}]})
    error = assert_error(agent.post("/api/v1/sessions/big-1/messages", raw=big), 413, "payload_too_large")
    assert error["details"]["max_bytes"] == 10_000
    assert counts() == before
    # Just under the limit is fine.
    ok = json.dumps({"messages": [{"role": "user", "content": "x" * 9_000}]})
    assert agent.post("/api/v1/sessions/big-1/messages", raw=ok).status_code == 202


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/s-1"),
    ("DELETE", "/api/v1/sessions/s-1/context"),
    ("GET", "/api/v1/sessions/s-1/handoff"),
    ("PUT", "/api/v1/sessions/s-1/messages"),
    ("POST", "/api/v1/health"),
])
def test_wrong_methods_are_405_in_the_error_shape(agent, method, path):
    make_session("s-1")
    response = agent.call(method, path, {})
    assert_error(response, 405, "method_not_allowed")
    assert "Allow" in response


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/sessions/", "/api/v2/sessions", "/api/",
                                  "/api/v1/sessions/s-1/context/", "/api/v1/sessions/s-1/revisions/-1/revert"])
def test_unknown_api_paths_are_json_404s(agent, path):
    for method in ("GET", "POST"):
        assert_error(agent.call(method, path, {}), 404, "not_found")


def test_unexpected_errors_become_a_500_in_the_error_shape():
    response = api_exception_handler(RuntimeError("boom"), {"view": None, "request": None})
    assert response.status_code == 500
    assert response.data == {"error": {"code": "server_error", "message": "Internal server error.", "details": {}}}


def test_deeply_nested_json_is_400_in_the_error_shape_and_stores_nothing(agent):
    before = counts()
    response = agent.client.post("/api/v1/sessions/deep-1/messages", data=b"[" * 100_000,
                                 content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {agent.raw_key}")
    assert_error(response, 400, "parse_error")
    assert counts() == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/api/v1/sessions/lone-1", {"mode": "\ud800"}),
    ("PATCH", "/api/v1/sessions/lone-1/context", {"mode": "\udfff", "version": 1}),
    ("POST", "/api/v1/sessions/lone-1/messages", {"messages": [{"role": "\ud800", "content": "hi"}]}),
    ("POST", "/api/v1/sessions/lone-1/messages", {"messages": [{"role": "user", "content": "hi", "\ud800": 1}]}),
    ("POST", "/api/v1/sessions/lone-1/handoff", {"reason": "x", "\udbff": 1}),
])
def test_a_lone_surrogate_anywhere_in_the_body_is_400_in_the_error_shape_and_changes_nothing(agent, method, path,
                                                                                             body):
    # json.dumps writes "\\ud800" as a JSON escape: valid JSON syntax, but no Unicode text; an error that echoed it
    # (an unknown choice, an unknown field's name) could not be encoded and answered a 500.
    make_session("lone-1", content={"summary": "kept"})
    before = counts()
    response = agent.call(method, path, raw=json.dumps(body), headers={"If-Match": '"1"'})
    assert "surrogate" in assert_error(response, 400, "parse_error")["message"]
    assert counts() == before
    session = SessionContext.objects.get(session_id="lone-1")
    assert (session.mode, session.summary, session.version, session.status) == ("planning", "kept", 1, "active")


def test_a_refused_field_has_one_shape_whichever_layer_refuses_it(agent, settings):
    settings.SESSIONCTX_MAX_GOAL_CHARS = 10
    make_session("shape-1")
    wrong_type = assert_error(agent.patch("/api/v1/sessions/shape-1/context", {"goal": 5},
                                          headers={"If-Match": '"0"'}), 400, "invalid")
    too_long = assert_error(agent.patch("/api/v1/sessions/shape-1/context", {"goal": "x" * 50},
                                        headers={"If-Match": '"0"'}), 400, "invalid")

    assert wrong_type["details"]["fields"]["goal"] == ["Must be a string."]
    assert too_long["details"]["fields"]["goal"] == ["Has 50 characters; compress it to at most 10."]
    assert SessionContext.objects.get(session_id="shape-1").version == 0
