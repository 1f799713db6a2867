"""The OpenAPI schema covers every route and validates; the docs page is local; create_api_key works."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from drf_spectacular.validation import validate_schema

from contexts import services
from contexts.api import urls as urls_api
from contexts.models import ApiKey
from tests.api.conftest import Agent, etag_of
from tests.api.test_auth import NOT_OPERATIONS, REQUIRED_SCOPE

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema():
    response = Agent().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def openapi_path(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def test_every_api_route_and_method_is_in_the_schema(schema):
    documented = {(path, method) for path, item in schema["paths"].items() for method in item}
    for pattern in urls_api.urlpatterns:
        if pattern.name in NOT_OPERATIONS:
            continue
        path = openapi_path(str(pattern.pattern))
        for name, method in REQUIRED_SCOPE:
            if name == pattern.name:
                assert (path, method) in documented, f"{method.upper()} {path} is missing from the schema"
    assert len(documented) == len(REQUIRED_SCOPE)


def test_the_schema_validates_against_the_openapi_spec(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_the_schema_describes_bearer_auth_and_the_error_responses(schema):
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        **schema["components"]["securitySchemes"]["ApiKey"], "type": "http", "scheme": "bearer"}
    error_ref = "#/components/schemas/Error"
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if path.startswith("/api/v1/health"):
                assert operation.get("security", []) in ([], [{}])  # public: no key required
                if path != "/api/v1/health/live":  # liveness checks nothing that could be down
                    assert responses["503"]["content"]["application/json"]["schema"]["$ref"] == error_ref
                continue
            assert {"ApiKey": []} in operation["security"], (method, path)
            for status in ("401", "403", "429"):
                assert responses[status]["content"]["application/json"]["schema"]["$ref"] == error_ref, (
                    method, path, status)
    patch = schema["paths"]["/api/v1/sessions/{session_id}/context"]["patch"]
    assert {"412", "428", "413"} <= set(patch["responses"])
    assert any(p["name"] == "If-Match" and p["in"] == "header" for p in patch["parameters"])


def test_every_answer_that_carries_an_etag_says_so_in_the_schema(schema, agent):
    # A write answers the context with its ETag (docs/api.md), and so does a 304: a client generated from the
    # schema only reads the headers the schema names.
    s = "/api/v1/sessions/{session_id}"
    calls = [
        ("put", s, "", {}, {}),  # 201: created
        ("put", s, "", {}, {}),  # 200: there already
        ("patch", f"{s}/context", "/context", {"summary": "a", "version": 0}, {}),
        ("put", f"{s}/context", "/context", {"summary": "b", "version": 1}, {}),
        ("post", f"{s}/revisions/{{version}}/revert", "/revisions/1/revert", {"reason": "back", "version": 2}, {}),
        ("post", f"{s}/context/reset", "/context/reset", {"reason": "over"}, {}),
        ("post", f"{s}/handoff", "/handoff", {"reason": "help"}, {}),
        ("get", f"{s}/context", "/context", None, {}),
        ("get", f"{s}/context", "/context", None, {"If-None-Match": "current"}),  # 304
        ("get", f"{s}/context/prompt", "/context/prompt", None, {}),
        ("get", f"{s}/context/prompt", "/context/prompt", None, {"If-None-Match": "current"}),  # 304
    ]
    answered = set()
    for method, path, suffix, body, headers in calls:
        headers = {name: etag_of("etag-1") if value == "current" else value for name, value in headers.items()}
        response = agent.call(method, f"/api/v1/sessions/etag-1{suffix}", body, headers=headers)
        assert response.status_code < 400, (method, path, response.content[:300])
        assert response.has_header("ETag"), (method, path, response.status_code)
        answered.add((method, path, str(response.status_code)))
        documented = schema["paths"][path][method]["responses"][str(response.status_code)].get("headers", {})
        assert "ETag" in documented, (method.upper(), path, response.status_code)
    assert ("put", s, "201") in answered and ("get", f"{s}/context", "304") in answered


def test_the_docs_page_loads_swagger_ui_from_this_server():
    response = Agent().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets)
    assert all(a.startswith("/") for a in assets), assets  # nothing from a CDN


def test_create_api_key_prints_the_key_alone_on_the_last_line():
    out = StringIO()
    call_command("create_api_key", "support bot", "--scopes", "read", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(key_hash=services.api_key_hash(raw))
    assert (key.name, key.scopes, key.is_active) == ("support bot", ["read"], True)
    assert Agent(raw).get("/api/v1/sessions").status_code == 200
    assert Agent(raw).put("/api/v1/sessions/by-reader").status_code == 403


def test_create_api_key_defaults_to_read_and_write_and_refuses_bad_scopes():
    out = StringIO()
    call_command("create_api_key", "agent", stdout=out)
    assert ApiKey.objects.get(name="agent").scopes == ["read", "write"]
    with pytest.raises(CommandError):
        call_command("create_api_key", "agent", "--scopes", "admin", stdout=StringIO())
    assert ApiKey.objects.count() == 1


def test_create_api_key_refuses_an_expiry_past_the_calendar_without_a_traceback():
    # --expires-in-days 3000000 (meant as "practically never") stopped with an OverflowError traceback.
    for days in ("3000000", "99999999999"):
        with pytest.raises(CommandError, match="--expires-in-days"):
            call_command("create_api_key", "agent", "--expires-in-days", days, stdout=StringIO())
    assert ApiKey.objects.count() == 0
    call_command("create_api_key", "agent", "--expires-in-days", "36500", stdout=StringIO())
    assert ApiKey.objects.get(name="agent").expires_at is not None


def test_seed_demo_prints_where_to_go_and_a_working_key_once():
    out = StringIO()
    call_command("seed_demo", "--url", "http://127.0.0.1:8011/", stdout=out)
    text = out.getvalue()
    assert "Staff pages:  http://127.0.0.1:8011/  (admin: http://127.0.0.1:8011/admin/)" in text
    raw = re.search(r"API key \(project default\):\s+(\S+)", text).group(1)
    sessions = Agent(raw).get("/api/v1/sessions")
    assert sessions.status_code == 200 and len(sessions.json()["results"]) >= 3
    # The second demo project's conversation is not the default project's key's to see.
    assert "demo-recipe-chat" not in {s["session_id"] for s in sessions.json()["results"]}
    assert Agent(raw).get("/api/v1/sessions/demo-recipe-chat/context").status_code == 404
    logins = dict(re.findall(r"^\s+(admin|editor|support)\s+/\s+(\S+)", text, flags=re.MULTILINE))
    assert set(logins) == {"admin", "editor", "support"} and len(set(logins.values())) == 3
    from django.contrib.auth import get_user_model

    for name, password in logins.items():
        assert get_user_model().objects.get(username=name).check_password(password), name
    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert "API key" not in again.getvalue()  # an existing database is left alone
