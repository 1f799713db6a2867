"""The Redis read cache in front of GET .../context and .../context/prompt: the same answers, never stale.

Redis is looked at and altered with a client of the test's own (as another process would), through the key
names the cache documents: `sessionctx:c:<session_id>` (a session's answers), `sessionctx:l:<session_id>` (a
fill's lease), `sessionctx:k:<key_hash>` (an API key, or a revocation's tombstone).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
import redis
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from contexts import readcache, selectors, services
from contexts.api.representations import CONTEXT_FIELDS, context_representation
from contexts.exceptions import ApplicationError
from contexts.models import ApiKey, Project, Revision, SessionContext
from contexts.prompting import render_prompt
from contexts.services import Actor
from tests.api.conftest import Agent, assert_error, etag_of
from tests.factories import make_api_key, make_session, make_user

# A database of its own: clearing the cache flushes it, and db 15 is the workers' broker in CI.
CACHE_URL = os.environ.get("TEST_CACHE_URL", "redis://127.0.0.1:6379/14")
DEAD_CACHE_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every connection is refused


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(CACHE_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


# Transactional: the cache is told about a change when its transaction commits (on_commit).
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not _redis_up(), reason=f"no Redis at {CACHE_URL}")]


def _caches(settings, location: str) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location,
                                   "OPTIONS": {"socket_timeout": settings.CACHE_SOCKET_TIMEOUT,
                                               "socket_connect_timeout": settings.CACHE_CONNECT_TIMEOUT}}}


@pytest.fixture(autouse=True)
def redis_cache(settings):
    _caches(settings, CACHE_URL)
    settings.SESSIONCTX_READ_CACHE = True
    assert readcache.enabled()
    flush = redis.Redis.from_url(CACHE_URL)  # not the cache itself: a test may point that at a dead port
    flush.flushdb()
    yield
    flush.flushdb()
    flush.close()


@pytest.fixture
def r() -> redis.Redis:
    """A plain client on the cache's Redis: what another process sees and does."""
    client = redis.Redis.from_url(CACHE_URL)
    yield client
    client.close()


def _entry(session_id: str) -> str:
    return f"sessionctx:c:{Project.default().pk}:{session_id}"


def _read(agent: Agent, session_id: str, **headers):
    return agent.get(f"/api/v1/sessions/{session_id}/context", headers=headers)


def _from_the_database(session_id: str) -> readcache.Entry:
    """What a read of the database answers for the session now (the API's own representation)."""
    row = selectors.context_get(session_id, (*CONTEXT_FIELDS, "pk"), project=Project.default())
    return readcache.Entry(row["version"], JSONRenderer().render(context_representation(row)), render_prompt(row),
                           row["pk"])


def _same_answer(cached, direct) -> None:
    assert cached.status_code == direct.status_code
    assert cached.content == direct.content
    for header in ("Content-Type", "ETag", "Vary"):
        assert cached.get(header) == direct.get(header), header


# --- the cached answer is the database's answer -----------------------------------------------------------


ANSWERS = [
    ("/context", {}),
    ("/context/prompt", {}),
    ("/context/prompt", {"Accept": "application/json"}),
    ("/context/prompt", {"Accept": "text/plain"}),
    ("/context", {"If-None-Match": "current"}),  # 304
    ("/context", {"If-None-Match": "stale"}),  # the whole answer
]


@pytest.mark.parametrize(("path", "headers"), ANSWERS, ids=[f"{p} {h}" for p, h in ANSWERS])
def test_a_cached_answer_is_the_databases_answer_byte_for_byte_and_needs_no_query(settings, reader, r, path,
                                                                                  headers):
    session = make_session("rc-same", content={"summary": "Moving to <b>PostgreSQL</b> ünicode ✓", "goal": "Ship",
                                               "plan": ["Dump", "Restore"], "progress": ["Dump"]})
    services.handoff_request(session=session, reason="stuck", actor=Actor.system())
    services.handoff_claim(session=session, actor=Actor.for_user(make_user("maria")))
    url = f"/api/v1/sessions/rc-same{path}"
    tags = {"current": etag_of("rc-same"), "stale": etag_of("rc-same", 2)}
    headers = {name: tags.get(value, value) for name, value in headers.items()}

    settings.SESSIONCTX_READ_CACHE = False
    direct = reader.get(url, headers=headers)
    assert not r.exists(_entry("rc-same"))  # the cache off: nothing stored
    settings.SESSIONCTX_READ_CACHE = True
    filled = reader.get(url, headers=headers)
    assert r.exists(_entry("rc-same"))
    with CaptureQueriesContext(connection) as queries:
        cached = reader.get(url, headers=headers)

    assert direct.status_code == (304 if headers.get("If-None-Match") == tags["current"] else 200)
    _same_answer(filled, direct)
    _same_answer(cached, direct)
    # Neither the session row nor the API key is read: both come from the cache (and the key's last-used
    # time was written by the first request of this minute).
    assert not [q["sql"] for q in queries if "contexts_sessioncontext" in q["sql"]]
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_the_cache_stores_exactly_what_the_database_answers_for_context_and_prompt(settings, reader):
    make_session("rc-bytes", mode="planning", content={"summary": "Line one\nline \"two\" </session_context>",
                                                       "goal": "G", "plan": ["a", "b"], "progress": ["a"]})
    settings.SESSIONCTX_READ_CACHE = False
    context, prompt = _read(reader, "rc-bytes"), reader.get("/api/v1/sessions/rc-bytes/context/prompt")
    settings.SESSIONCTX_READ_CACHE = True
    assert readcache.lookup(Project.default().pk, "rc-bytes") is None
    _read(reader, "rc-bytes")

    entry = readcache.lookup(Project.default().pk, "rc-bytes")

    assert entry == _from_the_database("rc-bytes")
    assert entry.context_json == context.content
    assert entry.prompt.encode() == prompt.content and entry.prompt.startswith("<session_context>")
    assert entry.version == 1 and context["ETag"] == prompt["ETag"] == etag_of("rc-bytes", 1)


@pytest.mark.parametrize("stored", [{}, {"e": '"1-00000000"'}], ids=["no etag", "a signed etag"])
def test_an_entry_an_earlier_release_stored_without_the_session_row_is_refilled_not_served(reader, r, stored):
    # Cached answers outlive a deploy: one stored before ETags named the session carries no tag to answer with,
    # and one that stored its ETag signed (with whatever SECRET_KEY was then) is not answered from either.
    make_session("rc-old", content={"summary": "now"})
    r.hset(_entry("rc-old"), mapping={"v": 1, "c": b'{"summary": "then"}', "p": "then", **stored})

    response = _read(reader, "rc-old")

    assert response.json()["summary"] == "now" and response["ETag"] == etag_of("rc-old")
    assert readcache.lookup(Project.default().pk, "rc-old") == _from_the_database("rc-old")


def test_after_a_secret_key_change_an_etag_read_from_the_cache_is_one_a_write_accepts(settings, agent):
    make_session("rc-key", content={"summary": "before"})
    assert _read(agent, "rc-key")["ETag"] == etag_of("rc-key", 1)  # cached from here on
    settings.SECRET_KEY = "rotated-" + settings.SECRET_KEY  # a deploy that rotates it; the cache outlives it

    read = _read(agent, "rc-key")

    assert readcache.lookup(Project.default().pk, "rc-key") is not None  # answered from the cache...
    assert read["ETag"] == etag_of("rc-key", 1)  # ...with the tag the service now signs
    written = agent.patch("/api/v1/sessions/rc-key/context", {"summary": "after"}, headers={"If-Match": read["ETag"]})
    assert written.status_code == 200 and written.json()["version"] == 2


def test_reads_answered_from_the_cache_count_against_the_throttle(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"}}
    make_session("rc-thr")
    busy, other = Agent(make_api_key("read", name="busy")[1]), Agent(make_api_key("read", name="other")[1])
    for _ in range(3):
        assert _read(busy, "rc-thr").status_code == 200  # the second and third from the cache
    assert readcache.lookup(Project.default().pk, "rc-thr") is not None
    refused = assert_error(_read(busy, "rc-thr"), 429, "throttled")
    assert refused["details"]["retry_after"] >= 0
    assert _read(other, "rc-thr").status_code == 200


# --- every change is seen by the next read ----------------------------------------------------------------


def _api_patch(session, agent):
    assert agent.patch(f"/api/v1/sessions/{session.session_id}/context", {"summary": "changed"},
                       headers={"If-Match": f'"{session.version}"'}).status_code == 200


def _owners_filled(session, agent):
    assert agent.put(f"/api/v1/sessions/{session.session_id}", {"user_id": "u-42"}).status_code == 200


def _reset(session, agent):
    services.snapshot_reset(session=session, reason="start over", actor=Actor.system())


def _revert(session, agent):
    session = services.snapshot_update(session=session, expected_version=session.version, changes={"summary": "oops"},
                                       source=Revision.Source.API, actor=Actor.system())
    assert _read(agent, session.session_id).json()["summary"] == "oops"  # cached again, at the new version
    services.snapshot_revert(session=session, to_version=1, expected_version=session.version, reason="undo",
                             actor=Actor.system(), source=Revision.Source.API)


def _handoff_round(session, agent):
    assert agent.post(f"/api/v1/sessions/{session.session_id}/handoff", {"reason": "needs a human"}).status_code \
        in (200, 201)
    services.handoff_claim(session=session, actor=Actor.for_user(make_user("olga")))


def _extraction(session, agent):
    # Offline extractor, in-process (no broker configured): the turn is extracted before the POST returns.
    response = agent.post(f"/api/v1/sessions/{session.session_id}/messages", {"messages": [
        {"role": "user", "content": "I want to migrate the billing database to PostgreSQL 16."},
        {"role": "assistant", "content": "Plan:\n1. Take a backup\n2. Run pg_upgrade\n3. Check the app"}]})
    assert response.status_code == 202, response.content


def _another_process(session, agent):
    # What a write in another web or worker process amounts to here: the row changes and that process drops
    # the entry. Nothing of this process runs.
    SessionContext.objects.filter(pk=session.pk).update(summary="from elsewhere", version=F("version") + 1,
                                                        updated_at=timezone.now())
    redis.Redis.from_url(CACHE_URL).delete(_entry(session.session_id))


WRITES = {"api patch": _api_patch, "owners filled in": _owners_filled, "reset": _reset, "revert": _revert,
          "handoff requested and taken": _handoff_round, "extraction": _extraction,
          "another process": _another_process}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_every_kind_of_change_is_seen_by_the_next_read(write, agent):
    session = make_session("rc-write", content={"summary": "before"})
    first = _read(agent, "rc-write")
    agent.get("/api/v1/sessions/rc-write/context/prompt")
    # now answered from the cache
    assert readcache.lookup(Project.default().pk, "rc-write").context_json == first.content
    write(session, agent)
    stored = _from_the_database("rc-write")

    after = _read(agent, "rc-write")
    prompt = agent.get("/api/v1/sessions/rc-write/context/prompt")

    assert after.status_code == 200 and after.content != first.content
    assert after.content == stored.context_json and after["ETag"] == etag_of("rc-write", stored.version)
    assert prompt.content.decode() == stored.prompt and prompt["ETag"] == after["ETag"]


def test_a_deleted_session_is_gone_and_a_new_one_of_that_id_starts_empty(agent, r):
    make_session("rc-del", content={"summary": "old conversation"})
    assert _read(agent, "rc-del").json()["summary"] == "old conversation"
    assert "old conversation" in agent.get("/api/v1/sessions/rc-del/context/prompt").content.decode()
    assert agent.delete("/api/v1/sessions/rc-del").status_code == 204
    assert not r.exists(_entry("rc-del"))
    assert_error(_read(agent, "rc-del"), 404, "not_found")
    assert_error(agent.get("/api/v1/sessions/rc-del/context/prompt"), 404, "not_found")
    assert agent.put("/api/v1/sessions/rc-del", {}).status_code == 201
    fresh = _read(agent, "rc-del")
    assert fresh.json()["summary"] == "" and fresh.json()["version"] == 0 and fresh["ETag"] == etag_of("rc-del", 0)
    assert agent.get("/api/v1/sessions/rc-del/context/prompt").content == b""


def test_a_read_that_raced_a_write_does_not_leave_the_old_answer_behind(agent, r):
    session = make_session("rc-race", content={"summary": "old"})

    def read_then_lose_the_race() -> readcache.Entry:
        old = _from_the_database("rc-race")
        # A writer commits after this read saw the row and before it stores what it saw.
        services.snapshot_update(session=session, expected_version=session.version, changes={"summary": "new"},
                                 source=Revision.Source.API, actor=Actor.system())
        return old

    entry = readcache.fill(Project.default().pk, "rc-race", read_then_lose_the_race)

    assert b'"old"' in entry.context_json and entry.version == 1  # that request answers what it read...
    # ...and stored nothing
    assert not r.exists(_entry("rc-race")) and readcache.lookup(Project.default().pk, "rc-race") is None
    after = _read(agent, "rc-race")
    assert after.json()["summary"] == "new" and after["ETag"] == etag_of("rc-race", 2)  # so nobody after it gets it
    assert readcache.lookup(Project.default().pk, "rc-race").version == 2


def test_owners_filled_in_are_not_hidden_by_a_read_that_lands_while_they_are_written(agent, monkeypatch):
    from contexts.services import sessions

    assert agent.put("/api/v1/sessions/rc-owner", {}).status_code == 201
    forget = readcache.context_changed

    def forget_then_another_read(project_id, session_id):
        forget(project_id, session_id)
        _read(agent, session_id)  # another agent's read, between the drop of the entry and the owners' write

    monkeypatch.setattr(sessions.readcache, "context_changed", forget_then_another_read)
    assert agent.put("/api/v1/sessions/rc-owner", {"user_id": "u-7"}).json()["user_id"] == "u-7"
    monkeypatch.undo()

    assert _read(agent, "rc-owner").json()["user_id"] == "u-7"  # not the empty owner that read saw


def test_a_fresh_read_answers_from_the_database_what_it_found_fresh(settings, agent, r):
    settings.SESSIONCTX_UPDATE_POLICY = "every_n_turns:5"  # the turn itself queues nothing
    agent.post("/api/v1/sessions/rc-fresh/messages", {"mode": "summary", "messages": [
        {"role": "user", "content": "We move the shop database to PostgreSQL next week."},
        {"role": "assistant", "content": "Noted."}]})
    assert _read(agent, "rc-fresh").json()["version"] == 0  # now cached
    # A worker's update has committed, and its drop of the cached answer has not reached Redis yet.
    SessionContext.objects.filter(session_id="rc-fresh").update(
        summary="Moving the shop database to PostgreSQL.", version=F("version") + 1, cursor_seq=F("last_message_seq"))
    assert r.exists(_entry("rc-fresh"))

    fresh = agent.get("/api/v1/sessions/rc-fresh/context?fresh=true")
    prompt = agent.get("/api/v1/sessions/rc-fresh/context/prompt?fresh=true")

    assert fresh["X-Context-Fresh"] == "true" and fresh["ETag"] == etag_of("rc-fresh", 1)
    assert fresh.json()["summary"] == "Moving the shop database to PostgreSQL."
    assert prompt["X-Context-Fresh"] == "true" and "PostgreSQL" in prompt.content.decode()


def test_a_fill_without_a_write_meanwhile_is_stored(r):
    make_session("rc-fill", content={"summary": "kept"})
    entry = readcache.fill(Project.default().pk, "rc-fill", lambda: _from_the_database("rc-fill"))
    assert readcache.lookup(Project.default().pk, "rc-fill") == entry
    assert not r.exists("sessionctx:l:rc-fill")  # the lease went with the store


# --- expiry -------------------------------------------------------------------------------------------------


def test_an_expired_entry_is_gone_and_the_next_read_refills_from_the_database(settings, agent, r):
    settings.SESSIONCTX_READ_CACHE_TTL = 1
    make_session("rc-ttl", content={"summary": "before"})
    assert _read(agent, "rc-ttl").json()["summary"] == "before"
    # Behind the cache's back (as a writer killed between its commit and its delete): no invalidation.
    SessionContext.objects.filter(session_id="rc-ttl").update(summary="after", version=F("version") + 1)
    stale = _read(agent, "rc-ttl")
    assert stale.json()["summary"] == "before" and stale["ETag"] == etag_of("rc-ttl", 1)  # the entry still answers
    assert 0 < r.pttl(_entry("rc-ttl")) <= 1000

    deadline = time.monotonic() + 3
    while r.exists(_entry("rc-ttl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not r.exists(_entry("rc-ttl")), "the entry outlived its TTL"
    assert readcache.lookup(Project.default().pk, "rc-ttl") is None

    fresh = _read(agent, "rc-ttl")
    assert fresh.json()["summary"] == "after" and fresh["ETag"] == etag_of("rc-ttl", 2)
    assert fresh.content == _from_the_database("rc-ttl").context_json
    assert "after" in agent.get("/api/v1/sessions/rc-ttl/context/prompt").content.decode()
    assert readcache.lookup(Project.default().pk, "rc-ttl").version == 2  # refilled


def test_answers_cached_together_do_not_all_expire_together(settings, agent, r):
    # Otherwise a hot set cached in one burst (after Redis restarts, say) refills from the database in one
    # burst every TTL, for as long as it is read.
    settings.SESSIONCTX_READ_CACHE_TTL = 100
    ids = [f"rc-spread-{i}" for i in range(40)]
    started = time.monotonic()
    for session_id in ids:
        make_session(session_id)
        assert _read(agent, session_id).status_code == 200
    lives = [r.pttl(_entry(session_id)) / 1000 for session_id in ids]
    # Each entry lost at most the time the reads took (a loaded machine took 1.5 s for these 40) to its clock.
    took = time.monotonic() - started
    assert all(100 * (1 - readcache.TTL_JITTER) - took - 0.1 < life <= 100 for life in lives), (took, lives)
    assert max(lives) - min(lives) > 5, lives  # spread over seconds, not the few it took to read them all


# --- API keys -----------------------------------------------------------------------------------------------


def _key_entry(key: ApiKey) -> str:
    return f"sessionctx:k:{key.key_hash}"


def test_a_revoked_key_is_refused_at_once_though_it_was_cached(read_key, r):
    key, raw = read_key
    make_session("rc-rev")
    reader = Agent(raw)
    assert _read(reader, "rc-rev").status_code == 200
    assert _read(reader, "rc-rev").status_code == 200
    assert r.get(_key_entry(key)) not in (None, readcache.TOMBSTONE)  # key and answer both cached now
    assert readcache.lookup(Project.default().pk, "rc-rev") is not None

    services.api_key_revoke(api_key=key)

    assert r.get(_key_entry(key)) == readcache.TOMBSTONE
    assert_error(_read(reader, "rc-rev"), 401)
    assert_error(reader.get("/api/v1/sessions/rc-rev/context/prompt"), 401)
    key.refresh_from_db()
    assert not key.is_active and key.revoked_at is not None


def test_a_key_revoked_by_another_process_is_refused_at_once(read_key, r):
    key, raw = read_key
    make_session("rc-rev2")
    reader = Agent(raw)
    for _ in range(3):
        assert _read(reader, "rc-rev2").status_code == 200
    assert r.exists(_key_entry(key))
    # Another process's revocation, in services.api_key_revoke's order: the tombstone first, then the row.
    r.set(_key_entry(key), readcache.TOMBSTONE, ex=60)
    ApiKey.objects.filter(pk=key.pk).update(is_active=False, revoked_at=timezone.now())
    assert_error(_read(reader, "rc-rev2"), 401)
    assert_error(reader.get("/api/v1/sessions/rc-rev2/context/prompt"), 401)


def test_a_key_without_the_read_scope_is_refused_from_the_cache_too(r):
    make_session("rc-scope")
    _read(Agent(make_api_key("read")[1]), "rc-scope")  # the answer is cached
    key, raw = make_api_key("write")
    writer_only = Agent(raw)
    for _ in range(2):
        assert_error(_read(writer_only, "rc-scope"), 403)
        assert_error(writer_only.get("/api/v1/sessions/rc-scope/context/prompt"), 403)
    assert r.exists(_key_entry(key))  # the later refusals came from the cached key


def test_a_key_deactivated_behind_the_services_back_is_refused_once_its_entry_expires(settings, read_key, r):
    # An SQL UPDATE (or a row deleted) tells the cache nothing: the key's cached entry is what bounds it.
    settings.SESSIONCTX_API_KEY_CACHE_TTL = 1
    key, raw = read_key
    make_session("rc-behind")
    reader = Agent(raw)
    for _ in range(2):
        assert _read(reader, "rc-behind").status_code == 200
    assert r.exists(_key_entry(key))

    ApiKey.objects.filter(pk=key.pk).update(is_active=False)
    time.sleep(1.3)

    assert_error(_read(reader, "rc-behind"), 401)
    assert_error(reader.get("/api/v1/sessions/rc-behind/context/prompt"), 401)


def test_a_cached_key_lives_at_most_the_documented_sixty_seconds(read_key, r):
    key, raw = read_key
    make_session("rc-key-ttl")
    assert _read(Agent(raw), "rc-key-ttl").status_code == 200
    assert 0 < r.ttl(_key_entry(key)) <= 60  # README: a change made behind the service's back, within 60 s


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(make_user("ada-admin", superuser=True))
    return client


def test_keys_revoked_in_bulk_in_the_admin_are_refused_at_once_on_cached_reads(admin_client, r):
    make_session("rc-bulk")
    keys = [make_api_key("read", name=f"agent {i}") for i in range(3)]
    for _, raw in keys:
        for _ in range(2):
            assert _read(Agent(raw), "rc-bulk").status_code == 200  # key and answer cached

    response = admin_client.post("/admin/contexts/apikey/", {"action": "revoke",
                                                             "_selected_action": [k.pk for k, _ in keys[:2]]},
                                 follow=True)

    assert "Revoked 2 API key(s)." in response.content.decode()
    for _, raw in keys[:2]:
        assert_error(_read(Agent(raw), "rc-bulk"), 401)
    assert _read(Agent(keys[2][1]), "rc-bulk").status_code == 200


def test_a_bulk_revocation_the_cache_cannot_be_told_of_is_reported_and_changes_nothing(settings, admin_client):
    key, raw = make_api_key("read", name="agent")
    make_session("rc-bulk-down")
    _caches(settings, DEAD_CACHE_URL)

    response = admin_client.post("/admin/contexts/apikey/", {"action": "revoke", "_selected_action": [key.pk]},
                                 follow=True)

    assert response.status_code == 200
    assert "cannot be revoked safely" in response.content.decode()
    key.refresh_from_db()
    assert key.is_active and key.revoked_at is None
    _caches(settings, CACHE_URL)
    assert _read(Agent(raw), "rc-bulk-down").status_code == 200


def test_revoking_while_the_cache_is_unreachable_changes_nothing(settings, read_key):
    key, raw = read_key
    make_session("rc-norev")
    _caches(settings, DEAD_CACHE_URL)
    with pytest.raises(ApplicationError) as refused:
        services.api_key_revoke(api_key=key)
    assert refused.value.status == 503 and refused.value.code == "unavailable"
    key.refresh_from_db()
    assert key.is_active and key.revoked_at is None
    assert _read(Agent(raw), "rc-norev").status_code == 200  # still a working key


@pytest.fixture
def own_redis_url(tmp_path):
    """A redis-server of this test's own, so what the service sends it can be watched without anyone else's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis.from_url(url).ping():
                break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(10)


def _commands_sent(url: str, requests) -> list[str]:
    """The commands the service's processes sent Redis while `requests()` ran (not those a script ran inside)."""
    end = "end-of-requests"
    ender = redis.Redis.from_url(url)
    ender.ping()  # connected before: its handshake is not among the commands counted
    with redis.Redis.from_url(url).monitor() as monitor:
        requests()
        ender.echo(end)
        sent = []
        while end not in (command := monitor.next_command())["command"]:
            if command["client_type"] != "lua":
                sent.append(command["command"].split(" ", 1)[0])
    return sent


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server to start one of the test's own")
def test_a_cached_read_costs_three_round_trips_to_redis(settings, agent, own_redis_url):
    # Before every model call an agent reads: each round trip costs it latency and the web server CPU. The key
    # check (with its last-used marker), the throttle's count and the answer: one command each.
    _caches(settings, own_redis_url)
    make_session("rc-trips", content={"summary": "S"})
    for _ in range(2):
        etag = _read(agent, "rc-trips")["ETag"]  # key and answer cached, marker set

    for path, headers, status in [("/context", {}, 200), ("/context/prompt", {}, 200),
                                  ("/context", {"If-None-Match": etag}, 304)]:
        def read(path=path, headers=headers, status=status):
            assert agent.get(f"/api/v1/sessions/rc-trips{path}", headers=headers).status_code == status

        sent = _commands_sent(own_redis_url, read)
        assert len(sent) <= 3, (path, headers, sent)


# --- Redis away ---------------------------------------------------------------------------------------------


def test_reads_are_answered_from_the_database_while_redis_is_down(settings, agent):
    make_session("rc-down", content={"summary": "still here", "goal": "G", "plan": ["a"]})
    settings.SESSIONCTX_READ_CACHE = False
    expected = _read(agent, "rc-down"), agent.get("/api/v1/sessions/rc-down/context/prompt")
    settings.SESSIONCTX_READ_CACHE = True
    _caches(settings, DEAD_CACHE_URL)

    started = time.monotonic()
    answers = [(_read(agent, "rc-down"), agent.get("/api/v1/sessions/rc-down/context/prompt")) for _ in range(3)]
    elapsed = time.monotonic() - started

    for context, prompt in answers:
        _same_answer(context, expected[0])
        _same_answer(prompt, expected[1])
    assert "still here" in answers[0][1].content.decode()
    # Six requests, each giving up on several cache calls: a refused connection must cost next to nothing.
    assert elapsed < 3, f"{elapsed:.2f}s for 6 reads with Redis down"


@pytest.fixture
def silent_redis_url():
    """A port that accepts connections and never answers: a Redis that hangs (overloaded, or half-gone)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_reads_are_answered_quickly_from_the_database_while_redis_does_not_answer(settings, agent, silent_redis_url):
    # contexts/readcache/client.py: "a Redis that does not answer must cost a read a fraction of a second".
    make_session("rc-hung", content={"summary": "still here"})
    settings.SESSIONCTX_READ_CACHE = False
    expected = _read(agent, "rc-hung")
    settings.SESSIONCTX_READ_CACHE = True
    _caches(settings, silent_redis_url)

    for _ in range(3):
        started = time.monotonic()
        answer = _read(agent, "rc-hung")
        elapsed = time.monotonic() - started
        _same_answer(answer, expected)
        assert elapsed < 1, f"{elapsed:.2f}s for one read while Redis does not answer"


def test_unusual_requests_get_the_api_views_answers(agent):
    make_session("rc-odd", content={"summary": "x"})
    _read(agent, "rc-odd")  # cached
    assert_error(agent.get("/api/v1/sessions/rc-odd/context?api_key=abc"), 401)
    assert_error(agent.get("/api/v1/sessions/rc-odd/context", headers={"Accept": "text/html"}), 406)
    assert_error(_read(agent, "bad id!"), 400)
    assert_error(_read(agent, "rc-missing"), 404, "not_found")
    assert_error(agent.get("/api/v1/sessions/rc-missing/context/prompt"), 404, "not_found")
    assert_error(Agent("sck_nope_nope").get("/api/v1/sessions/rc-odd/context"), 401)
    assert_error(Agent().get("/api/v1/sessions/rc-odd/context"), 401)
    assert SessionContext.objects.filter(session_id="rc-missing").count() == 0
    assert readcache.lookup(Project.default().pk, "rc-missing") is None
