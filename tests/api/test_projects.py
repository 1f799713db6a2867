"""Projects (#16): a key sees only its project. A two-project matrix built from the URLconf: every API route
called with project A's key on project B's sessions and objects answers 404 (not 403, so ids are not probed) and
writes nothing of B's; lists, search filters, exports and the event feed never hold B's rows; the read cache
never answers one project with another's entry; webhooks get only their project's events; expired keys are 401."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import timedelta

import pytest
import redis
from django.core.management import CommandError, call_command
from django.urls import URLPattern, reverse
from django.utils import timezone

from contexts import readcache, services
from contexts.api import urls as urls_api
from contexts.api.http import ApiView
from contexts.extraction.runs import extraction_request
from contexts.models import (
    ApiKey,
    DataDeletion,
    Event,
    ExtractionRun,
    FieldLock,
    HandoffEvent,
    LockChange,
    Message,
    Project,
    Revision,
    SessionContext,
    WebhookDelivery,
)
from contexts.services import Actor
from contexts.services.locks import locks_set
from contexts.services.webhooks import webhook_endpoint_create
from tests.api.conftest import Agent, assert_error

AGENT = Actor.system("test")

# What project A's key gets on each operation when it names project B's objects (a session of B's that A does
# not have, B's run id, B's revision version, B's end user). A route added to contexts/api/urls.py without an
# entry here fails test_every_api_route_is_in_the_isolation_matrix.
ON_B = {
    ("api-health", "get"): "public",
    ("api-health-live", "get"): "public",
    ("api-health-ready", "get"): "public",
    # Lists: A's own rows only (B's never appear).
    ("api-sessions", "get"): "own list",
    ("api-events", "get"): "own list",
    # Create-if-missing: A gets a session of its own with that id; B's stays as it was.
    ("api-session", "put"): "creates A's own",
    ("api-messages", "post"): "creates A's own",
    # An end user's id is each project's own: A's user of that id has nothing, B's is untouched.
    ("api-user", "delete"): "A's user (nothing)",
    ("api-user-export", "get"): "A's user (nothing)",
    # Everything that names one object: 404.
    ("api-session", "delete"): 404,
    ("api-context", "get"): 404,
    ("api-context", "patch"): 404,
    ("api-context", "put"): 404,
    ("api-context-prompt", "get"): 404,
    ("api-context-reset", "post"): 404,
    ("api-context-update", "post"): 404,
    ("api-revisions", "get"): 404,
    ("api-revision-revert", "post"): 404,
    ("api-messages", "get"): 404,
    ("api-handoff", "post"): 404,
    ("api-locks", "get"): 404,
    ("api-locks", "put"): 404,
    ("api-session-runs", "get"): 404,
    ("api-session-usage", "get"): 404,
    ("api-run", "get"): 404,
    ("api-session-export", "get"): 404,
}
NOT_OPERATIONS = {"api-schema", "api-docs", "api-not-found"}
# Valid bodies, so that a refusal can only be about the object (a 400 would hide a missing scope check).
BODIES = {
    ("api-session", "put"): {"user_id": "a-user"},
    ("api-context", "patch"): {"summary": "written by A", "reason": "probe"},
    ("api-context", "put"): {"summary": "written by A", "goal": "A's goal", "reason": "probe"},
    ("api-context-reset", "post"): {"reason": "probe"},
    ("api-revision-revert", "post"): {"reason": "probe"},
    ("api-messages", "post"): {"messages": [{"role": "user", "content": "written by A"}]},
    ("api-handoff", "post"): {"reason": "probe"},
    ("api-locks", "put"): {"fields": ["summary"], "reason": "probe"},
}


def api_operations() -> set[tuple[str, str]]:
    found = set()
    for pattern in urls_api.urlpatterns:
        assert isinstance(pattern, URLPattern)
        if pattern.name in NOT_OPERATIONS:
            continue
        view_class = pattern.callback.view_class
        assert issubclass(view_class, ApiView), pattern.name
        for method in view_class.http_method_names:
            if method not in ("options", "head", "trace") and hasattr(view_class, method):
                found.add((pattern.name, method))
    return found


def test_every_api_route_is_in_the_isolation_matrix():
    assert api_operations() == set(ON_B)


# --- two projects ------------------------------------------------------------------------------------------------


def project(slug: str) -> Project:
    return services.project_get_or_create(slug=slug)[0]


def key_of(project: Project, *scopes: str) -> str:
    return services.api_key_create(name=f"{project.slug} agent", scopes=list(scopes or ("read", "write")),
                                   project=project)[1]


def populate(project: Project, session_id: str, *, user_id: str, words: str) -> SessionContext:
    """A session with a history: messages, 3 versions, a run, a lock, a handoff request, feed events."""
    session, _ = services.session_get_or_create(session_id=session_id, project=project, user_id=user_id,
                                                agent_id=f"{project.slug}-agent", mode="planning")
    services.messages_post(session_id=session_id, project=project, messages=[
        {"role": "user", "content": f"{words}: first question"}, {"role": "assistant", "content": f"{words}: reply"}])
    session.refresh_from_db()
    for n in (1, 2, 3):
        session = services.snapshot_update(session=session, expected_version=session.version, source="api",
                                           actor=AGENT, changes={"summary": f"{words} v{n}", "plan": [f"{words}"]})
    extraction_request(session=session, trigger="api")
    session.refresh_from_db()
    locks_set(session=session, fields=["goal"], reason=f"{words} lock", actor=AGENT)
    return services.handoff_request(session=session, reason=f"{words} wants a human", actor=AGENT)


SESSION_MODELS = (Message, Revision, ExtractionRun, HandoffEvent, Event, FieldLock, LockChange)


def state_of(project: Project) -> dict:
    """Everything of a project's that a request could change: its sessions' columns and its rows per model."""
    sessions = {s["session_id"]: s for s in SessionContext.objects.filter(project=project).values()}
    rows = {model.__name__: sorted(model.objects.filter(session__project=project).values_list("pk", flat=True))
            for model in SESSION_MODELS}
    rows["WebhookDelivery"] = sorted(WebhookDelivery.objects.filter(event__project=project)
                                     .values_list("pk", flat=True))
    return {"sessions": sessions, "rows": rows}


@pytest.fixture
def two(db):
    """Projects A and B. B has `b-only` (A has no such session), user `b-user`; both have `shared` and
    user `same-user`."""
    a, b = project("proj-a"), project("proj-b")
    b_only = populate(b, "b-only", user_id="b-user", words="bravo secret")
    populate(b, "shared", user_id="same-user", words="bravo shared")
    populate(a, "shared", user_id="same-user", words="alpha shared")
    return {"a": a, "b": b, "a_key": key_of(a), "b_key": key_of(b), "b_only": b_only,
            "b_run": ExtractionRun.objects.filter(session=b_only).latest("created_at")}


def url_on_b(name: str, two) -> str:
    kwargs = {}
    converters = next(p for p in urls_api.urlpatterns if p.name == name).pattern.converters
    if "session_id" in converters:
        kwargs["session_id"] = "b-only"
    if "version" in converters:
        kwargs["version"] = 2  # B's session has versions 1-3
    if "run_id" in converters:
        kwargs["run_id"] = two["b_run"].id
    if "user_id" in converters:
        kwargs["user_id"] = "b-user"
    return reverse(name, kwargs=kwargs)


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "method"), sorted(ON_B))
def test_project_a_key_on_project_b_objects_is_404_and_writes_nothing_of_b(name, method, two):
    expected = ON_B[(name, method)]
    b_before, a_before = state_of(two["b"]), state_of(two["a"])
    response = Agent(two["a_key"]).call(method.upper(), url_on_b(name, two), BODIES.get((name, method)),
                                        headers={"If-Match": '"3"'})
    b_after = state_of(two["b"])
    assert b_after == b_before, f"{method.upper()} {name} changed project B"
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    body = raw.decode()
    assert "bravo" not in body, f"{method.upper()} {name} answered with B's content: {body[:300]}"
    if expected == 404:
        error = assert_error(response, 404, "not_found")
        assert "b-only" in error["message"] or str(two["b_run"].id) in error["message"]
        assert state_of(two["a"]) == a_before
    elif expected == "creates A's own":
        assert response.status_code in (201, 202) and response.json().get("created") is not False, response.content
        created = SessionContext.objects.get(session_id="b-only", project=two["a"])
        assert created.pk != two["b_only"].pk
    elif expected == "A's user (nothing)":
        assert response.status_code == 200, response.content
        if method == "delete":
            assert set(response.json()["deleted"].values()) == {0}
            assert DataDeletion.objects.filter(project=two["b"]).count() == 0
        else:
            assert raw == b""
    elif expected == "own list":
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 200


@pytest.mark.django_db
def test_lists_search_filters_exports_and_the_feed_never_hold_project_bs_rows(two):
    a_agent = Agent(two["a_key"])
    sessions = a_agent.get("/api/v1/sessions").json()["results"]
    assert [s["session_id"] for s in sessions] == ["shared"]
    for query in ("user_id=b-user", "user_id=same-user", "status=handoff_requested", "mode=planning",
                  "updated_after=2000-01-01T00:00:00Z"):
        found = a_agent.get(f"/api/v1/sessions?{query}").json()["results"]
        assert [s["session_id"] for s in found] == (["shared"] if query != "user_id=b-user" else []), query
        assert {s["agent_id"] for s in found} <= {"proj-a-agent"}
    # The feed: A's events only, whatever the filter; B's session id gives nothing.
    feed = a_agent.get("/api/v1/events?limit=500").json()["events"]
    assert feed and {e["session_id"] for e in feed} == {"shared"}
    a_event_ids = set(Event.objects.filter(project=two["a"]).values_list("id", flat=True))
    assert {e["id"] for e in feed} == a_event_ids
    assert a_agent.get("/api/v1/events?session_id=b-only").json()["events"] == []
    assert "bravo" not in json.dumps(feed)
    # B's key, to show the same queries do find B's rows.
    b_feed = Agent(two["b_key"]).get("/api/v1/events?limit=500").json()["events"]
    assert {e["session_id"] for e in b_feed} == {"b-only", "shared"}
    assert not a_event_ids & {e["id"] for e in b_feed}
    # The end user's export: A's `same-user` is A's sessions only.
    export = b"".join(a_agent.get("/api/v1/users/same-user/export").streaming_content)
    lines = [json.loads(line) for line in export.splitlines()]
    assert [(d["project"], d["session"]["session_id"], d["session"]["summary"]) for d in lines] == [
        ("proj-a", "shared", "alpha shared v3")]


@pytest.mark.django_db
def test_the_same_session_id_in_two_projects_writes_to_as_never_touch_bs(two):
    a_agent = Agent(two["a_key"])
    b_before = state_of(two["b"])
    a_shared = SessionContext.objects.get(project=two["a"], session_id="shared")
    b_shared = SessionContext.objects.get(project=two["b"], session_id="shared")
    assert a_agent.get("/api/v1/sessions/shared/context").json()["summary"] == "alpha shared v3"
    version = a_shared.version
    steps = [
        ("PATCH", "/context", {"summary": "A edits", "reason": "x"}, 200),
        ("POST", "/messages", {"messages": [{"role": "user", "content": "A again"}]}, 202),
        ("POST", "/context/update", None, 202),
        ("PUT", "/locks", {"fields": [], "reason": "unlock"}, 200),
        ("POST", f"/revisions/{version - 1}/revert", {"reason": "back"}, 200),
        ("POST", "/context/reset", {"reason": "clean"}, 200),
    ]
    for method, path, body, status in steps:
        current = SessionContext.objects.get(pk=a_shared.pk).version
        response = a_agent.call(method, f"/api/v1/sessions/shared{path}", body, headers={"If-Match": f'"{current}"'})
        assert response.status_code == status, (method, path, response.content)
    # B's revision version that A's session does not have: A's session has no such version (404 about A's).
    b_versions = set(Revision.objects.filter(session=b_shared).values_list("version", flat=True))
    missing = max(b_versions | set(Revision.objects.filter(session=a_shared).values_list("version", flat=True))) + 5
    Revision.objects.create(session=b_shared, version=missing, source="api", actor="test", snapshot={},
                            changed_fields=[])
    b_before = state_of(two["b"])
    current = SessionContext.objects.get(pk=a_shared.pk).version
    assert_error(a_agent.post(f"/api/v1/sessions/shared/revisions/{missing}/revert", {"reason": "x"},
                              headers={"If-Match": f'"{current}"'}), 404, "not_found")
    assert a_agent.get("/api/v1/sessions/shared/revisions?limit=100").json()["results"][0]["version"] == current
    # A's DELETE of `shared` and the erasure of A's `same-user` leave B's alone.
    assert a_agent.delete("/api/v1/sessions/shared").status_code == 204
    assert a_agent.delete("/api/v1/users/same-user").json()["deleted"]["sessions"] == 0
    assert state_of(two["b"]) == b_before
    b_shared.refresh_from_db()
    assert b_shared.summary == "bravo shared v3" and b_shared.status == "handoff_requested"
    assert Agent(two["b_key"]).get("/api/v1/sessions/shared/context").json()["summary"] == "bravo shared v3"


# --- the read cache ----------------------------------------------------------------------------------------------

CACHE_URL = os.environ.get("TEST_CACHE_URL", "redis://127.0.0.1:6379/14")


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(CACHE_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def read_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                                   "OPTIONS": {"socket_timeout": settings.CACHE_SOCKET_TIMEOUT,
                                               "socket_connect_timeout": settings.CACHE_CONNECT_TIMEOUT}}}
    settings.SESSIONCTX_READ_CACHE = True
    assert readcache.enabled()
    client = redis.Redis.from_url(CACHE_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not _redis_up(), reason=f"no Redis at {CACHE_URL}")
def test_a_cached_answer_never_crosses_projects(read_cache):
    a, b = project("proj-a"), project("proj-b")
    populate(b, "b-only", user_id="b-user", words="bravo secret")
    populate(b, "shared", user_id="same-user", words="bravo shared")
    populate(a, "shared", user_id="same-user", words="alpha shared")
    a_agent, b_agent = Agent(key_of(a)), Agent(key_of(b))
    # B reads first: its answers are cached (under B's project id).
    for session_id in ("b-only", "shared"):
        assert b_agent.get(f"/api/v1/sessions/{session_id}/context").status_code == 200
        assert b_agent.get(f"/api/v1/sessions/{session_id}/context/prompt").status_code == 200
    # A reads the same ids: its own session, or 404, never B's cached answer.
    context = a_agent.get("/api/v1/sessions/shared/context")
    assert context.status_code == 200 and context.json()["summary"] == "alpha shared v3"
    prompt = a_agent.get("/api/v1/sessions/shared/context/prompt").content.decode()
    assert "alpha shared v3" in prompt and "bravo" not in prompt
    assert_error(a_agent.get("/api/v1/sessions/b-only/context"), 404, "not_found")
    assert_error(a_agent.get("/api/v1/sessions/b-only/context/prompt"), 404, "not_found")
    # B's entries are still there, under B's project (the names the read cache documents).
    assert read_cache.exists(f"sessionctx:c:{b.pk}:shared", f"sessionctx:c:{b.pk}:b-only") == 2
    # With B's ETag, A gets its own answer (B's version means nothing in A).
    b_version = SessionContext.objects.get(project=b, session_id="shared").version
    SessionContext.objects.filter(project=a, session_id="shared").update(version=b_version + 1)
    readcache.context_changed(a.pk, "shared")
    assert a_agent.get("/api/v1/sessions/shared/context", headers={"If-None-Match": f'"{b_version}"'}
                       ).status_code == 200
    # A writes its `shared`: B's cached answer stays (and is still right).
    version = a_agent.get("/api/v1/sessions/shared/context").json()["version"]
    assert a_agent.patch("/api/v1/sessions/shared/context", {"summary": "alpha edit"},
                         headers={"If-Match": f'"{version}"'}).status_code == 200
    assert read_cache.exists(f"sessionctx:c:{b.pk}:shared") == 1
    assert b_agent.get("/api/v1/sessions/shared/context").json()["summary"] == "bravo shared v3"
    assert a_agent.get("/api/v1/sessions/shared/context").json()["summary"] == "alpha edit"
    # A creates its own `b-only`: A reads A's (empty) one, B still reads B's.
    assert a_agent.put("/api/v1/sessions/b-only", {}).status_code == 201
    assert a_agent.get("/api/v1/sessions/b-only/context").json()["summary"] == ""
    assert b_agent.get("/api/v1/sessions/b-only/context").json()["summary"] == "bravo secret v3"


# --- keys: expiry and the command ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_expired_key_is_401_key_expired_with_a_clear_message():
    expires_at = timezone.now() + timedelta(seconds=1)
    _, raw = services.api_key_create(name="temp", scopes=["read"], project=project("proj-a"), expires_at=expires_at)
    agent = Agent(raw)
    assert agent.get("/api/v1/sessions").status_code == 200  # and cached as active, when there is a cache
    # The clock passes the expiry, nothing is written: the key (and its cached copy) stops working.
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)
    response = agent.get("/api/v1/sessions")
    error = assert_error(response, 401, "key_expired")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "expired" in error["message"] and "ask an admin for a new one" in error["message"]
    assert_error(agent.get("/api/v1/sessions/anything/context"), 401, "key_expired")


@pytest.mark.django_db
def test_create_api_key_with_a_new_project_creates_it_and_its_key_sees_only_that_project(two):
    out = io.StringIO()
    call_command("create_api_key", "new bot", "--scopes", "read,write", "--project", "brand-new", stdout=out)
    lines = out.getvalue().strip().splitlines()
    raw = lines[-1]
    assert raw.startswith("sck_") and " " not in raw
    assert "brand-new" in lines[0]
    new = Project.objects.get(slug="brand-new")
    assert ApiKey.objects.get(prefix=raw.split("_")[1]).project == new
    agent = Agent(raw)
    assert agent.get("/api/v1/sessions").json()["results"] == []
    assert_error(agent.get("/api/v1/sessions/shared/context"), 404, "not_found")
    assert agent.put("/api/v1/sessions/new-1", {"user_id": "n"}).status_code == 201
    assert [s["session_id"] for s in agent.get("/api/v1/sessions").json()["results"]] == ["new-1"]
    assert SessionContext.objects.get(session_id="new-1").project == new
    assert agent.get("/api/v1/events").json()["events"] == []
    # Again with the same slug: the same project, a second key.
    call_command("create_api_key", "second", "--project", "brand-new", stdout=io.StringIO())
    assert Project.objects.filter(slug="brand-new").count() == 1 and new.api_keys.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("args", [("bot", "--scopes", "admin"), ("bot", "--scopes", ","), ("  ",),
                                  ("bot", "--expires-in-days", "0")])
def test_create_api_key_with_bad_arguments_creates_no_project(args):
    # The project was created before the name and scopes were checked: a typo in --scopes left an empty project
    # behind, in the admin and in the staff pages' project switcher.
    with pytest.raises(CommandError):
        call_command("create_api_key", *args, "--project", "typo-project", stdout=io.StringIO())
    assert not Project.objects.filter(slug="typo-project").exists()
    assert not ApiKey.objects.exists()


# --- webhooks ------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_endpoints_receive_only_their_projects_events(settings, two, django_capture_on_commit_callbacks):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    a_hook = webhook_endpoint_create(url="http://127.0.0.1:9/a", project=two["a"])
    b_hook = webhook_endpoint_create(url="http://127.0.0.1:9/b", project=two["b"])
    with django_capture_on_commit_callbacks(execute=False):
        a_session = SessionContext.objects.get(project=two["a"], session_id="shared")
        services.snapshot_update(session=a_session, expected_version=a_session.version, source="api", actor=AGENT,
                                 changes={"summary": "alpha again"})
        services.snapshot_update(session=two["b_only"], expected_version=two["b_only"].version, source="api",
                                 actor=AGENT, changes={"summary": "bravo again"})
    a_events = set(Event.objects.filter(project=two["a"]).values_list("id", flat=True))
    b_events = set(Event.objects.filter(project=two["b"]).values_list("id", flat=True))
    to_a = set(WebhookDelivery.objects.filter(endpoint=a_hook).values_list("event_id", flat=True))
    to_b = set(WebhookDelivery.objects.filter(endpoint=b_hook).values_list("event_id", flat=True))
    assert to_a and to_a <= a_events and not to_a & b_events
    assert to_b and to_b <= b_events and not to_b & a_events
