"""The Redis read cache in front of GET .../context and .../context/prompt: same answers, never stale."""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis
from django.core.cache import caches
from django.db import connection
from django.db import connections as db_connections
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from contexts import readcache, selectors, services
from contexts.api import _cache_entry
from contexts.api.serializers import CONTEXT_FIELDS
from contexts.exceptions import ApplicationError
from contexts.models import ApiKey, Revision, SessionContext
from contexts.services import Actor
from tests.api.conftest import Agent, assert_error
from tests.factories import make_api_key, make_session, make_user

# A database of its own: clearing the cache flushes it, and db 15 is the workers' broker in CI.
CACHE_URL = os.environ.get("TEST_CACHE_URL", "redis://127.0.0.1:6379/14")


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(CACHE_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


# Transactional: the cache is told about a change when its transaction commits (on_commit).
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not _redis_up(), reason=f"no Redis at {CACHE_URL}")]


@pytest.fixture(autouse=True)
def redis_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
    settings.SESSIONCTX_READ_CACHE = True
    cache = caches["default"]
    cache.clear()
    yield cache
    cache.clear()


def _raw(cache):
    return readcache.redis_client(cache)


def _read(agent: Agent, session_id: str, **headers):
    return agent.get(f"/api/v1/sessions/{session_id}/context", headers=headers)


def _same_answer(cached, direct) -> None:
    assert cached.status_code == direct.status_code
    assert cached.content == direct.content
    for header in ("Content-Type", "ETag"):
        assert cached.get(header) == direct.get(header), header


def test_cached_answers_are_the_api_views_answers_and_need_no_query(settings, reader):
    maria = make_user("maria")
    session = make_session("rc-same", content={"summary": "Moving to <b>PostgreSQL</b>", "goal": "Ship",
                                               "plan": ["Dump", "Restore"], "progress": ["Dump"]})
    services.handoff_request(session=session, reason="stuck", actor=Actor.system())
    services.handoff_claim(session=session, actor=Actor.for_user(maria))
    paths = [("/api/v1/sessions/rc-same/context", {}),
             ("/api/v1/sessions/rc-same/context/prompt", {}),
             ("/api/v1/sessions/rc-same/context/prompt", {"Accept": "application/json"}),
             ("/api/v1/sessions/rc-same/context/prompt", {"Accept": "text/plain"}),
             ("/api/v1/sessions/rc-same/context", {"If-None-Match": '"3"'}),
             ("/api/v1/sessions/rc-same/context", {"If-None-Match": '"2"'})]
    for path, headers in paths:
        settings.SESSIONCTX_READ_CACHE = False
        direct = reader.get(path, headers=headers)
        settings.SESSIONCTX_READ_CACHE = True
        reader.get(path, headers=headers)  # fills the cache
        with CaptureQueriesContext(connection) as queries:
            cached = reader.get(path, headers=headers)
        _same_answer(cached, direct)
        assert len(queries) == 0, (path, headers, [q["sql"] for q in queries])
    assert reader.get("/api/v1/sessions/rc-same/context").json()["assignee"] == "maria"


def _api_patch(session, agent):
    assert agent.patch(f"/api/v1/sessions/{session.session_id}/context", {"summary": "changed"},
                       headers={"If-Match": f'"{session.version}"'}).status_code == 200


def _owners_filled(session, agent):
    assert agent.put(f"/api/v1/sessions/{session.session_id}", {"user_id": "u-42"}).status_code == 200


def _reset(session, agent):
    services.snapshot_reset(session=session, reason="start over", actor=Actor.system())


def _revert(session, agent):
    services.snapshot_update(session=session, expected_version=session.version, changes={"summary": "oops"},
                             source=Revision.Source.API, actor=Actor.system())
    assert agent.get(f"/api/v1/sessions/{session.session_id}/context").json()["summary"] == "oops"
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


WRITES = {"api patch": _api_patch, "owners filled in": _owners_filled, "reset": _reset, "revert": _revert,
          "handoff requested and taken": _handoff_round, "extraction": _extraction}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_every_kind_of_change_is_seen_by_the_next_read(write, agent):
    session = make_session("rc-write", content={"summary": "before"})
    first = _read(agent, "rc-write")
    assert _read(agent, "rc-write").content == first.content  # now answered from the cache
    write(session, agent)
    stored = selectors.context_get("rc-write", CONTEXT_FIELDS)
    after = _read(agent, "rc-write")
    assert after.status_code == 200
    assert after.content != first.content
    assert after.json()["version"] == stored["version"] and after["ETag"] == f'"{stored["version"]}"'
    assert after.json()["summary"] == stored["summary"] and after.json()["status"] == stored["status"]
    prompt = agent.get("/api/v1/sessions/rc-write/context/prompt")
    assert prompt["ETag"] == after["ETag"]


def test_a_deleted_session_is_gone_and_a_new_one_of_that_id_starts_empty(agent):
    make_session("rc-del", content={"summary": "old conversation"})
    assert _read(agent, "rc-del").json()["summary"] == "old conversation"
    assert agent.delete("/api/v1/sessions/rc-del").status_code == 204
    assert_error(_read(agent, "rc-del"), 404, "not_found")
    assert agent.put("/api/v1/sessions/rc-del", {}).status_code == 201
    fresh = _read(agent, "rc-del").json()
    assert fresh["summary"] == "" and fresh["version"] == 0


def test_a_read_that_raced_a_write_does_not_leave_the_old_answer_behind(agent):
    session = make_session("rc-race", content={"summary": "old"})

    def read_then_lose_the_race():
        old = _cache_entry(selectors.context_get("rc-race", CONTEXT_FIELDS))
        # A writer commits after this read saw the row and before it stores what it saw.
        services.snapshot_update(session=session, expected_version=session.version, changes={"summary": "new"},
                                 source=Revision.Source.API, actor=Actor.system())
        return old

    entry = readcache.context_fill("rc-race", read_then_lose_the_race)
    assert b'"old"' in entry[readcache.CONTEXT_JSON]  # that request answers what it read...
    assert _read(agent, "rc-race").json()["summary"] == "new"  # ...but nobody after it does


def test_cached_entries_expire(settings, agent, redis_cache):
    settings.SESSIONCTX_READ_CACHE_TTL = 7
    make_session("rc-ttl")
    _read(agent, "rc-ttl")
    ttl = _raw(redis_cache).ttl(redis_cache.make_key("sc:c:rc-ttl"))
    assert 0 < ttl <= 7


def test_answers_cached_together_do_not_all_expire_together(settings, agent, redis_cache):
    # Otherwise a hot set cached in one burst (after Redis restarts, say) refills from the database in one
    # burst every TTL, for as long as it is read.
    settings.SESSIONCTX_READ_CACHE_TTL = 100
    ids = [f"rc-spread-{i}" for i in range(40)]
    for session_id in ids:
        make_session(session_id)
        assert _read(agent, session_id).status_code == 200
    lives = [_raw(redis_cache).pttl(redis_cache.make_key(f"sc:c:{session_id}")) / 1000 for session_id in ids]
    assert all(100 * (1 - readcache.TTL_JITTER) - 1 < life <= 100 for life in lives), lives
    assert max(lives) - min(lives) > 5, lives  # spread over seconds, not the few it took to read them all


def test_a_revoked_key_is_refused_at_once_though_it_was_cached(read_key):
    key, raw = read_key
    make_session("rc-rev")
    reader = Agent(raw)
    assert _read(reader, "rc-rev").status_code == 200
    assert _read(reader, "rc-rev").status_code == 200  # key and answer both cached now
    services.api_key_revoke(api_key=key)
    assert_error(_read(reader, "rc-rev"), 401)
    assert_error(reader.get("/api/v1/sessions/rc-rev/context/prompt"), 401)


def test_a_key_without_the_read_scope_is_refused_from_the_cache_too():
    make_session("rc-scope")
    writer_only = Agent(make_api_key("write")[1])
    for _ in range(2):
        assert_error(_read(writer_only, "rc-scope"), 403)


def test_revoking_while_the_cache_is_unreachable_changes_nothing(settings, read_key):
    key, raw = read_key
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    with pytest.raises(ApplicationError) as refused:
        services.api_key_revoke(api_key=key)
    assert refused.value.status == 503
    assert ApiKey.objects.get(pk=key.pk).is_active


def test_reads_are_answered_from_the_database_while_redis_is_down(settings, agent):
    make_session("rc-down", content={"summary": "still here"})
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    response = _read(agent, "rc-down")
    assert response.status_code == 200 and response.json()["summary"] == "still here"
    assert "still here" in agent.get("/api/v1/sessions/rc-down/context/prompt").content.decode()


def test_unusual_requests_get_the_api_views_answers(agent):
    make_session("rc-odd", content={"summary": "x"})
    assert_error(agent.get("/api/v1/sessions/rc-odd/context?api_key=abc"), 401)
    assert_error(agent.get("/api/v1/sessions/rc-odd/context", headers={"Accept": "text/html"}), 406)
    assert_error(_read(agent, "bad id!"), 400)
    assert_error(_read(agent, "rc-missing"), 404, "not_found")
    assert_error(Agent("sck_nope_nope").get("/api/v1/sessions/rc-odd/context"), 401)
    assert SessionContext.objects.filter(session_id="rc-missing").count() == 0


# --- the near cache: each web thread's own copy, kept coherent by Redis's invalidation pushes -------------


def _lookups_in_redis(cache) -> int:
    """How many lookups Redis has run (its own count of EVALSHA calls)."""
    return int(_raw(cache).info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def _changed_by_another_process(cache, session_id: str, summary: str) -> None:
    """What another web or worker process's write does: the row changes, that process deletes the entry.

    Nothing of this process runs, so only Redis's push can tell this process's near cache.
    """
    SessionContext.objects.filter(session_id=session_id).update(summary=summary, version=F("version") + 1)
    _raw(cache).delete(cache.make_key(f"sc:c:{session_id}"))


def test_a_repeated_read_is_answered_by_the_near_cache_without_a_round_trip(agent, redis_cache):
    make_session("nc-hit", content={"summary": "hello"})
    for path in ("/api/v1/sessions/nc-hit/context", "/api/v1/sessions/nc-hit/context/prompt"):
        agent.get(path)  # fills Redis
        agent.get(path)  # read through this thread's connection: kept near
        before = _lookups_in_redis(redis_cache)
        answers = [agent.get(path) for _ in range(5)]
        assert _lookups_in_redis(redis_cache) == before
        assert all(a.status_code == 200 and a.content == answers[0].content for a in answers)
    assert _read(agent, "nc-hit", **{"If-None-Match": '"1"'}).status_code == 304


def test_without_the_near_cache_every_read_asks_redis(settings, agent, redis_cache):
    settings.SESSIONCTX_NEAR_CACHE = False
    make_session("nc-off")
    _read(agent, "nc-off")
    before = _lookups_in_redis(redis_cache)
    for _ in range(3):
        assert _read(agent, "nc-off").status_code == 200
    assert _lookups_in_redis(redis_cache) == before + 3


def test_a_change_made_by_another_process_is_seen_by_the_next_read(agent, redis_cache):
    make_session("nc-other", content={"summary": "before"})
    for _ in range(3):
        assert _read(agent, "nc-other").json()["summary"] == "before"
    _changed_by_another_process(redis_cache, "nc-other", "after")
    after = _read(agent, "nc-other")
    assert after.json()["summary"] == "after" and after["ETag"] == '"2"'
    assert "after" in agent.get("/api/v1/sessions/nc-other/context/prompt").content.decode()


def test_a_key_revoked_by_another_process_is_refused_at_once(redis_cache, read_key):
    key, raw = read_key
    make_session("nc-rev")
    reader = Agent(raw)
    for _ in range(3):
        assert _read(reader, "nc-rev").status_code == 200
    # Another process's revocation: the tombstone first, then the row (services.api_key_revoke's order).
    _raw(redis_cache).set(redis_cache.make_key(f"sc:k:{key.key_hash}"), readcache.TOMBSTONE, ex=60)
    ApiKey.objects.filter(pk=key.pk).update(is_active=False)
    assert_error(_read(reader, "nc-rev"), 401)


def test_a_lost_cache_connection_forgets_what_it_held(settings, agent, redis_cache):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": None}}
    make_session("nc-lost", content={"summary": "before"})
    for _ in range(3):
        assert _read(agent, "nc-lost").json()["summary"] == "before"
    killer = redis.Redis.from_url(CACHE_URL)
    assert killer.client_kill_filter(_type="normal", skipme=True) >= 1  # the push below cannot reach us
    _changed_by_another_process(redis_cache, "nc-lost", "after")
    assert _read(agent, "nc-lost").json()["summary"] == "after"
    assert _read(agent, "nc-lost").json()["summary"] == "after"  # and reconnected


def test_reads_from_the_near_cache_count_against_the_throttle(settings, redis_cache):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "500/min"}}
    make_session("nc-thr")
    busy = Agent(make_api_key("read", name="busy")[1])
    before = _lookups_in_redis(redis_cache)
    for _ in range(500):
        assert _read(busy, "nc-thr").status_code == 200
    # Most reads were counted here and reported in batches, far fewer round trips than reads...
    assert _lookups_in_redis(redis_cache) - before < 250
    # ...yet the limit holds exactly: from 90 % of it on, each read is counted in Redis.
    assert_error(_read(busy, "nc-thr"), 429, "throttled")


def test_two_threads_near_the_limit_do_not_let_more_through_than_it(settings, redis_cache):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "500/min"}}
    make_session("nc-thr2")
    raw = make_api_key("read", name="busy")[1]
    answered = []

    def reads(count: int | None) -> None:
        # A thread of its own: its own cache objects, connection and near cache, like a gunicorn thread.
        agent, n = Agent(raw), 0
        try:
            while count is None or n < count:
                status = _read(agent, "nc-thr2").status_code
                answered.append(status)
                if status == 429:
                    return
                n += 1
        finally:
            db_connections.close_all()

    def in_thread(count: int | None) -> None:
        thread = threading.Thread(target=reads, args=(count,))
        thread.start()
        thread.join()

    in_thread(457)  # far from the limit: counted near, reported in batches
    in_thread(None)  # the other thread, until it is refused
    in_thread(None)  # and a third
    assert answered.count(200) == 500
    assert answered[-1] == 429


def test_a_near_copy_read_before_a_change_another_thread_applied_is_not_kept(agent, redis_cache):
    make_session("nc-race", content={"summary": "old"})
    for _ in range(3):
        _read(agent, "nc-race")  # in Redis, and the key's entry near
    near = readcache._near(redis_cache)
    name = redis_cache.make_key("sc:c:nc-race")
    since = near.sync()  # a round trip begins here and reads the old answer...
    old = _raw(redis_cache).hgetall(name)
    _changed_by_another_process(redis_cache, "nc-race", "new")
    deadline = time.monotonic() + 5
    while near.recent.get(name, 0) <= since and time.monotonic() < deadline:
        near.sync()  # ...while another thread applies the change's invalidation
    assert near.recent.get(name, 0) > since
    near.remember(since, "unused", None, 0, name, int(old[b"v"]), readcache.CONTEXT_JSON, old[b"c"], 30_000,
                  time.monotonic())
    assert _read(agent, "nc-race").json()["summary"] == "new"


def test_a_write_in_this_process_drops_the_near_copies_before_its_push_arrives(agent, redis_cache):
    session = make_session("nc-local", content={"summary": "old"})
    for _ in range(3):
        _read(agent, "nc-local")
    near = readcache._near(redis_cache)
    name = redis_cache.make_key("sc:c:nc-local")
    assert name in near.contexts
    services.snapshot_update(session=session, expected_version=session.version, changes={"summary": "new"},
                             source=Revision.Source.API, actor=Actor.system())
    assert name not in near.contexts  # no sync since: the write itself dropped it


def test_a_cache_the_direct_connection_cannot_speak_to_is_used_through_redis_py(monkeypatch, agent, redis_cache):
    # As for a rediss:// (TLS) or unix-socket CACHE_URL: no direct connection, no near cache, the same answers.
    monkeypatch.setattr(readcache._Connection, "params", staticmethod(lambda url: None))
    session = make_session("via-client", content={"summary": "before"})
    _read(agent, "via-client")
    with CaptureQueriesContext(connection) as queries:
        cached = _read(agent, "via-client")
    assert cached.json()["summary"] == "before" and len(queries) == 0
    assert readcache._near(redis_cache) is None
    services.snapshot_update(session=session, expected_version=session.version, changes={"summary": "after"},
                             source=Revision.Source.API, actor=Actor.system())
    assert _read(agent, "via-client").json()["summary"] == "after"


def test_a_server_that_refuses_the_handshake_is_used_through_redis_py_without_the_near_cache(
        monkeypatch, agent, redis_cache):
    original = readcache._Connection.__init__

    def refusing(self, params, setup):  # as Redis 5 answers HELLO 3, or a server without CLIENT TRACKING
        original(self, params, setup=[*setup, ["NO-SUCH-COMMAND"]])

    monkeypatch.setattr(readcache._Connection, "__init__", refusing)
    monkeypatch.setattr(readcache, "_nears", {})
    make_session("refused", content={"summary": "still cached"})
    assert _read(agent, "refused").status_code == 200  # the refusal itself: this one from the database
    _read(agent, "refused")
    with CaptureQueriesContext(connection) as queries:
        cached = _read(agent, "refused")
    assert cached.json()["summary"] == "still cached" and len(queries) == 0
    assert readcache._near(redis_cache) is None
    assert isinstance(readcache._direct(redis_cache), readcache._ViaClient)
