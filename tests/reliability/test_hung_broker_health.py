"""Readiness with a broker that accepts connections and never answers (a SIGSTOPped proxy in front of Redis):
every probe answers within 2 s with the broker reported down, and ready again once the broker answers; and with a
cache that answers reads but refuses writes."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import pytest
import redis

from tests.api.conftest import Agent, assert_error
from tests.reliability.servers import RedisServer, free_port
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BOUND = 2.0


@pytest.fixture
def broker_proxy(settings):
    target = urlsplit(REDIS_URL)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    proxy = TcpProxy(target.hostname, target.port or 6379)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{proxy.port}{target.path}"
    yield proxy
    proxy.stop()


def timed_get(path: str):
    started = time.monotonic()
    response = Agent().get(path)
    return response, time.monotonic() - started


def test_readiness_answers_in_time_with_a_hung_broker_and_recovers(broker_proxy):
    response, _ = timed_get("/api/v1/health/ready")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["broker"] == "ok"

    broker_proxy.freeze()
    # Several probes in a row: the first check still hangs while the next ones come.
    for path in ("/api/v1/health/ready", "/api/v1/health/ready", "/api/v1/health"):
        response, seconds = timed_get(path)
        error = assert_error(response, 503, "unavailable")
        assert seconds < BOUND, (path, seconds)
        assert error["details"]["failed"] == {"broker": "TimeoutError"}
        assert error["details"]["checks"]["database"] == "ok"
        assert error["details"]["checks"]["broker"] == "down (TimeoutError)"
    # Liveness looks at nothing: it stays up.
    live, seconds = timed_get("/api/v1/health/live")
    assert (live.status_code, live.json(), seconds < 0.5) == (200, {"status": "ok"}, True)

    broker_proxy.thaw()
    deadline = time.monotonic() + 10
    while (response := timed_get("/api/v1/health/ready")[0]).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 200 and response.json()["checks"]["broker"] == "ok", response.content


def test_readiness_reports_a_cache_that_answers_reads_but_refuses_writes(settings):
    # A replica left read-only after a failover: reads work, and the deletes that keep cached answers coherent
    # and the tombstones that revoke keys fail. Readiness must not say "ok".
    server = RedisServer().start()
    try:
        settings.CACHE_URL = server.url
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": server.url}}
        response, _ = timed_get("/api/v1/health/ready")
        assert response.status_code == 200 and response.json()["checks"]["cache"] == "ok", response.content

        redis.Redis.from_url(server.url).replicaof("127.0.0.1", free_port())  # a master that is not there
        assert redis.Redis.from_url(server.url).get("anything") is None  # reads still answer

        response, seconds = timed_get("/api/v1/health/ready")
        # Reported, and the process stays ready: a cache outage only slows reads (they go to the database).
        assert response.status_code == 200 and seconds < BOUND
        assert response.json()["status"] == "degraded"
        assert response.json()["checks"]["cache"] == "down (ReadOnlyError)"
    finally:
        server.remove()
