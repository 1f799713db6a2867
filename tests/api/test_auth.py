"""Who may call what: a route x credential matrix built from the URLconf, keys, scopes, throttling."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, reverse
from django.utils import timezone

from contexts import services
from contexts.api import urls as urls_api
from contexts.api.http import ApiView
from contexts.extraction.runs import extraction_request
from contexts.models import ApiKey
from tests.api.conftest import Agent, assert_error, counts
from tests.factories import make_api_key, make_session

pytestmark = pytest.mark.django_db

# The scope every API operation needs (None: public). A route added to contexts/api/urls.py
# without an entry here fails test_every_api_route_has_a_declared_scope.
REQUIRED_SCOPE = {
    ("api-health", "get"): None,
    ("api-health-live", "get"): None,
    ("api-health-ready", "get"): None,
    ("api-sessions", "get"): "read",
    ("api-session", "put"): "write",
    ("api-session", "delete"): "write",
    ("api-context", "get"): "read",
    ("api-context", "patch"): "write",
    ("api-context", "put"): "write",
    ("api-context-prompt", "get"): "read",
    ("api-context-reset", "post"): "write",
    ("api-context-update", "post"): "write",
    ("api-revisions", "get"): "read",
    ("api-revision-revert", "post"): "write",
    ("api-messages", "get"): "read",
    ("api-messages", "post"): "write",
    ("api-handoff", "post"): "write",
    ("api-locks", "get"): "read",
    ("api-locks", "put"): "write",
    ("api-session-runs", "get"): "read",
    ("api-session-usage", "get"): "read",
    ("api-run", "get"): "read",
    ("api-events", "get"): "read",
    ("api-session-export", "get"): "read",
    ("api-user", "delete"): "write",
    ("api-user-export", "get"): "read",
}
# Routes that are not API operations: the schema, its browsable docs, the JSON 404 for other /api/ paths.
NOT_OPERATIONS = {"api-schema", "api-docs", "api-not-found"}


def api_operations() -> set[tuple[str, str]]:
    found = set()
    for pattern in urls_api.urlpatterns:
        assert isinstance(pattern, URLPattern)
        view_class = getattr(pattern.callback, "view_class", None)
        if pattern.name in NOT_OPERATIONS:
            continue
        assert view_class is not None and issubclass(view_class, ApiView), f"{pattern.name} is not an ApiView"
        for method in view_class.http_method_names:
            if method not in ("options", "head", "trace") and hasattr(view_class, method):
                found.add((pattern.name, method))
    return found


def test_every_api_route_has_a_declared_scope():
    names = {p.name for p in urls_api.urlpatterns}
    assert names >= NOT_OPERATIONS
    assert api_operations() == set(REQUIRED_SCOPE)


@pytest.fixture
def matrix_session():
    session = make_session("matrix-1", content={"summary": "kept", "plan": ["a"]})
    run = extraction_request(session=session, trigger="api")
    return session, run


def url_for(name: str, session, run) -> str:
    kwargs = {}
    route = next(p for p in urls_api.urlpatterns if p.name == name)
    converters = route.pattern.converters
    if "session_id" in converters:
        kwargs["session_id"] = session.session_id
    if "version" in converters:
        kwargs["version"] = 1
    if "run_id" in converters:
        kwargs["run_id"] = run.id
    if "user_id" in converters:
        kwargs["user_id"] = "matrix-user"
    return reverse(name, kwargs=kwargs)


def _revoked_key() -> str:
    key, raw = make_api_key("read", "write", name="revoked agent")
    services.api_key_revoke(api_key=key)
    return raw


CREDENTIALS = {
    "anonymous": lambda: None,
    "unknown key": lambda: "sck_00000000_not-a-key-anyone-was-given",
    "revoked key": _revoked_key,
    "read-only key": lambda: make_api_key("read", name="reader")[1],
    "write-only key": lambda: make_api_key("write", name="writer")[1],
    "read-write key": lambda: make_api_key("read", "write", name="full")[1],
}


def expected_refusal(credential: str, needed: str | None) -> int | None:
    if needed is None:
        return None
    if credential in ("anonymous", "unknown key", "revoked key"):
        return 401
    scopes = {"read-only key": {"read"}, "write-only key": {"write"}, "read-write key": {"read", "write"}}[credential]
    return None if needed in scopes else 403


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize(("name", "method"), sorted(REQUIRED_SCOPE))
def test_route_credential_matrix(name, method, credential, matrix_session):
    session, run = matrix_session
    agent = Agent(CREDENTIALS[credential]())
    before = counts()
    version_before = session.version
    response = agent.call(method.upper(), url_for(name, session, run), {}, headers={"If-Match": '"1"'})
    refusal = expected_refusal(credential, REQUIRED_SCOPE[(name, method)])
    if refusal is None:
        assert response.status_code not in (401, 403), response.content
        return
    error = assert_error(response, refusal)
    if refusal == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert error["code"] in ("not_authenticated", "authentication_failed")
    else:
        assert error["code"] == "permission_denied"
    session.refresh_from_db()
    assert counts() == before
    assert session.version == version_before and session.summary == "kept"


def test_a_key_stops_working_the_moment_it_is_revoked(write_key):
    key, raw = write_key
    make_session("rev-1")
    agent = Agent(raw)
    assert agent.get("/api/v1/sessions/rev-1/context").status_code == 200
    services.api_key_revoke(api_key=key)
    assert_error(agent.get("/api/v1/sessions/rev-1/context"), 401, "authentication_failed")


def test_a_key_in_the_query_string_is_never_accepted(write_key):
    make_session("qs-1")
    for param in ("key", "api_key", "token", "access_token"):
        response = Agent().get(f"/api/v1/sessions/qs-1/context?{param}={write_key[1]}")
        assert_error(response, 401, "authentication_failed")
    # Not even next to a valid header: a key in a URL is a leak the caller must fix.
    assert_error(Agent(write_key[1]).get(f"/api/v1/sessions/qs-1/context?api_key={write_key[1]}"), 401)


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Token sck_x", "Basic dXNlcjpwdw=="])
def test_malformed_or_foreign_authorization_headers_are_401(header):
    make_session("hdr-1")
    response = Agent().get("/api/v1/sessions/hdr-1/context", headers={"Authorization": header})
    assert_error(response, 401)


def test_use_records_last_used_time(write_key):
    key, raw = write_key
    assert key.last_used_at is None
    Agent(raw).get("/api/v1/sessions")
    key.refresh_from_db()
    assert key.last_used_at is not None and (timezone.now() - key.last_used_at).total_seconds() < 60


def test_only_a_hash_of_the_key_is_stored(write_key):
    key, raw = write_key
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert raw not in {str(v) for v in stored.values()}
    assert raw.startswith(f"sck_{key.prefix}_")


def test_throttling_is_per_key_with_retry_after(settings, write_key):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"}}
    busy, other = Agent(write_key[1]), Agent(make_api_key("read", name="other")[1])
    for _ in range(3):
        assert busy.get("/api/v1/sessions").status_code == 200
    response = busy.get("/api/v1/sessions")
    error = assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert error["details"]["retry_after"] >= 0
    assert other.get("/api/v1/sessions").status_code == 200


def test_an_address_that_keeps_sending_unknown_keys_is_refused_before_any_key_is_looked_up(settings, write_key):
    # Refused keys are 401s before the per-key throttle runs: without a bound an address could try keys (each a
    # database query) as fast as it can send them.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1,
                               "DEFAULT_THROTTLE_RATES": {"api_key": "100/min", "api_key_failures": "3/min"}}
    guesser, good = Agent("sck_guess_0000"), Agent(write_key[1])
    here, elsewhere = {"X-Forwarded-For": "10.0.0.1"}, {"X-Forwarded-For": "10.0.0.2"}
    assert good.get("/api/v1/sessions", headers=here).status_code == 200  # a good key is no failure
    for _ in range(3):
        assert_error(guesser.get("/api/v1/sessions", headers=here), 401, "authentication_failed")

    refused = guesser.get("/api/v1/sessions", headers=here)
    error = assert_error(refused, 429, "throttled")
    assert 1 <= int(refused["Retry-After"]) <= 60 and "refused API keys" in error["message"]
    right_guess = Agent(make_api_key("read", name="never used yet")[1])
    with CaptureQueriesContext(connection) as queries:
        # A right guess now is refused too, and costs no query: guessing gains nothing.
        assert_error(right_guess.get("/api/v1/sessions", headers=here), 429, "throttled")
    assert not [q["sql"] for q in queries if "apikey" in q["sql"].lower()]
    # Another address is not affected, nor a request with no key (it is a plain 401).
    assert good.get("/api/v1/sessions", headers=elsewhere).status_code == 200
    assert_error(Agent().get("/api/v1/sessions", headers=here), 401)


def test_forwarded_for_is_ignored_without_a_configured_proxy(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"}}
    anonymous = Agent()
    for _ in range(2):
        assert anonymous.get("/api/docs/", headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 200
    # A client cannot get a fresh allowance by inventing an address.
    assert anonymous.get("/api/docs/", headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 429


def test_forwarded_for_is_used_behind_the_configured_number_of_proxies(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"},
                               "NUM_PROXIES": 1}
    anonymous = Agent()
    for _ in range(2):
        assert anonymous.get("/api/docs/", headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 200
    assert anonymous.get("/api/docs/", headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 429
    # The proxy appends the real client address last; only that one counts.
    assert anonymous.get("/api/docs/", headers={"X-Forwarded-For": "10.0.0.1, 10.0.0.2"}).status_code == 200


def test_health_needs_no_key_and_shows_no_data():
    make_session("private-session", user_id="alice")
    response = Agent().get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"
    assert b"private-session" not in response.content and b"alice" not in response.content


def test_health_is_503_in_the_error_shape_when_the_broker_does_not_answer(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    response = Agent().get("/api/v1/health")
    error = assert_error(response, 503, "unavailable")
    assert set(error["details"]["failed"]) == {"broker"}
    assert response["Retry-After"] == "1"  # as every 503 unavailable says when to try again


def test_health_checks_a_configured_broker(settings):
    import os

    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("set TEST_REDIS_URL to check against a real broker")
    settings.CELERY_BROKER_URL = url
    response = Agent().get("/api/v1/health")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert (checks["database"], checks["broker"], set(checks)) == ("ok", "ok", {"database", "cache", "broker"})
