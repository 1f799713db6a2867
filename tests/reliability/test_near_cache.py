"""The near cache across real processes: gunicorn's workers each keep copies of what they read, and a write
made in one of them, or in another process altogether, is seen by the next read in every one of them."""

from __future__ import annotations

import os

import pytest
import redis
from django.db import connection

from contexts import services
from contexts.models import Revision
from contexts.services import Actor
from tests.factories import make_api_key, make_session
from tests.reliability.conftest import call
from tests.reliability.servers import Gunicorn, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

CACHE_URL = os.environ.get("TEST_CACHE_URL", "redis://127.0.0.1:6379/14")
WORKERS = 3
READS = 12  # each on a new connection, so the kernel hands them to any of the workers


@pytest.fixture
def web(settings, postgres_only):
    try:
        redis.Redis.from_url(CACHE_URL, socket_connect_timeout=1).flushdb()
    except redis.RedisError:
        pytest.skip(f"no Redis at {CACHE_URL}")
    # This process writes too (as a worker or a management command would): the same cache as gunicorn's.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
    settings.SESSIONCTX_READ_CACHE = True
    server = Gunicorn(subprocess_env(connection.settings_dict, CACHE_URL=CACHE_URL, API_THROTTLE_RATE="100000/min"),
                      workers=WORKERS).wait_ready()
    yield server
    server.stop()
    redis.Redis.from_url(CACHE_URL).flushdb()


def _versions(web: Gunicorn, key: str, path: str) -> set[str]:
    answers = [call("GET", f"{web.url}/api/v1/sessions/near-x/{path}", key=key) for _ in range(READS)]
    assert {status for status, _, _ in answers} == {200}
    return {head["ETag"] for _, head, _ in answers}


def test_every_web_process_sees_each_write_at_once(web):
    session = make_session("near-x", content={"summary": "v1"})
    key = make_api_key("read", "write")[1]
    for _ in range(3):  # every worker has read it, so holds copies of the answer and the key
        assert _versions(web, key, "context") == {'"1"'}
        assert _versions(web, key, "context/prompt") == {'"1"'}
    for n in range(2, 6):
        status, _, _ = call("PATCH", f"{web.url}/api/v1/sessions/near-x/context", key=key,
                            body={"summary": f"v{n}"}, headers={"If-Match": f'"{n - 1}"'})
        assert status == 200
        assert _versions(web, key, "context") == {f'"{n}"'}
        assert _versions(web, key, "context/prompt") == {f'"{n}"'}
    session.refresh_from_db()
    # A write from a process that serves no reads (here: this test's), told to the web processes by Redis alone.
    services.snapshot_update(session=session, expected_version=session.version, changes={"summary": "from afar"},
                             source=Revision.Source.API, actor=Actor.system())
    assert _versions(web, key, "context") == {f'"{session.version}"'}
    status, _, body = call("GET", f"{web.url}/api/v1/sessions/near-x/context", key=key)
    assert body["summary"] == "from afar"


def test_a_key_revoked_elsewhere_is_refused_by_every_web_process(web):
    make_session("near-x")
    api_key, raw = make_api_key("read")
    for _ in range(3):
        assert _versions(web, raw, "context") == {'"0"'}
    services.api_key_revoke(api_key=api_key)
    statuses = {call("GET", f"{web.url}/api/v1/sessions/near-x/context", key=raw)[0] for _ in range(READS)}
    assert statuses == {401}
