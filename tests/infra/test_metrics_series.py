"""/metrics' model latency histogram, retries, read-cache hit/miss counter and database series, after a real run
against the fake model: in this process, and from a gunicorn with 2 workers in multiprocess mode."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from contexts.models import ExtractionRun
from tests.api.conftest import Agent
from tests.factories import make_api_key, make_session
from tests.fake_openai import FakeOpenAI, error
from tests.reliability.conftest import call
from tests.reliability.servers import Gunicorn, subprocess_env

TOKEN = "metrics-token-for-tests"
TURN = [{"role": "user", "content": "Plan my trip to Lisbon"},
        {"role": "assistant", "content": "Plan:\n1. Book flights\n2. Book a hotel"}]
LATENCY = "sessionctx_model_call_latency_seconds"
LOOKUPS = "sessionctx_read_cache_lookups_total"
RETRIES = "sessionctx_extraction_retries_total"


def redis_cache_url() -> str | None:
    """A Redis for the read cache: the suite's cache (CACHE_URL), else its broker's Redis; None without one."""
    url = os.environ.get("CACHE_URL") or os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    return url


def parse(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape() -> dict[tuple[str, tuple], float]:
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of a series over the labels not given."""
    return sum(value for (found, pairs), value in samples.items()
               if found == name and all(dict(pairs).get(k) == v for k, v in labels.items()))


@pytest.mark.django_db
def test_a_scrape_after_a_run_finds_model_latency_retries_cache_lookups_and_database_series(
        settings, django_capture_on_commit_callbacks):
    cache_url = redis_cache_url()
    if cache_url is None:
        pytest.skip("the read cache needs Redis")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": cache_url}}
    settings.METRICS_TOKEN = TOKEN
    settings.SESSIONCTX_AUTO_UPDATE = True
    with FakeOpenAI() as fake:
        settings.SESSIONCTX_MODEL, settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "fake-model", "k", fake.url
        settings.OPENAI_TIMEOUT, settings.SESSIONCTX_MODEL_RETRIES = 5.0, 2
        settings.SESSIONCTX_RETRY_BACKOFF = settings.SESSIONCTX_RETRY_BACKOFF_MAX = 0.01
        # The model fails once (a 500), then answers after 0.3 s.
        fake.push(error(500, "overloaded"))
        original = fake.default
        fake.default = lambda request: _slow(original(request), 0.3)
        before = scrape()
        agent = Agent(make_api_key("read", "write")[1])
        with django_capture_on_commit_callbacks(execute=True):
            body = agent.post("/api/v1/sessions/series-1/messages", {"mode": "planning", "messages": TURN}).json()
    run = ExtractionRun.objects.get(pk=body["update"]["run_id"])
    assert (run.status, run.model_calls) == ("succeeded", 2), run.error
    # A run whose task came to a worker three times (two redeliveries), with one model call.
    ExtractionRun.objects.create(session=make_session("series-2"), status="succeeded", extractor="openai",
                                 model="fake-model", attempts=3, model_calls=1, latency_ms=900)
    middle = scrape()
    for _ in range(3):
        assert agent.get("/api/v1/sessions/series-1/context").status_code == 200
    after = scrape()

    # One failed call and one answered call to the model, each timed; the answer took 0.3 s (more the first time
    # in a process, when the client's response types are built).
    assert delta(after, before, f"{LATENCY}_count", model="fake-model", outcome="error") == 1
    assert delta(after, before, f"{LATENCY}_count", model="fake-model", outcome="ok") == 1
    assert delta(after, before, f"{LATENCY}_bucket", model="fake-model", outcome="ok", le="0.25") == 0
    assert delta(after, before, f"{LATENCY}_bucket", model="fake-model", outcome="ok", le="5.0") == 1
    assert 0.3 <= delta(after, before, f"{LATENCY}_sum", model="fake-model", outcome="ok") < 5.0
    # Retries: the run's second model call, and the other run's two redeliveries.
    assert after[(RETRIES, (("kind", "model_call"),))] == 1
    assert after[(RETRIES, (("kind", "task_redelivery"),))] == 2
    # The first read of the context after the run missed the cache and filled it; the next two hit it.
    assert delta(after, middle, LOOKUPS, cache="context", result="miss") == 1
    assert delta(after, middle, LOOKUPS, cache="context", result="hit") == 2
    assert delta(after, middle, LOOKUPS, cache="api_key", result="hit") == 3
    # django-prometheus's database side counts the queries made meanwhile.
    vendor = connection.vendor
    assert delta(after, before, "django_db_execute_total", alias="default", vendor=vendor) > 0
    assert delta(after, before, "django_db_query_duration_seconds_count", alias="default", vendor=vendor) > 0


def _slow(reply, seconds: float):
    reply.delay = seconds
    return reply


@pytest.mark.django_db(transaction=True)
def test_every_scrape_of_a_two_worker_gunicorn_sums_the_new_series(tmp_path):
    cache_url = redis_cache_url()
    if cache_url is None:
        pytest.skip("the read cache needs Redis")
    _, key = make_api_key("read", "write")
    suffix = uuid.uuid4().hex[:8]  # a session no other run of this test (sharing the Redis) has cached
    with FakeOpenAI() as fake:
        original = fake.default
        fake.default = lambda request: _slow(original(request), 0.3)
        fake.push(error(500, "overloaded"))
        env = subprocess_env(connection.settings_dict, METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
                             CACHE_URL=cache_url, SESSIONCTX_AUTO_UPDATE="true", SESSIONCTX_MODEL="fake-model",
                             OPENAI_API_KEY="k", OPENAI_BASE_URL=fake.url, OPENAI_TIMEOUT="5",
                             SESSIONCTX_MODEL_RETRIES="2", SESSIONCTX_RETRY_BACKOFF="0.01",
                             SESSIONCTX_RETRY_BACKOFF_MAX="0.01")
        server = Gunicorn(env, workers=2).wait_ready()
        try:
            status, _, body = call("POST", f"{server.url}/api/v1/sessions/series-mp-{suffix}/messages", key=key,
                                   body={"mode": "planning", "messages": TURN})
            assert status == 202, body
            run_id = body["update"]["run_id"]
            deadline = time.monotonic() + 30
            while not ExtractionRun.objects.filter(pk=run_id, status="succeeded").exists():
                assert time.monotonic() < deadline, list(ExtractionRun.objects.values("status", "error"))
                time.sleep(0.1)
            scrapes = [_scrape(server.url) for _ in range(6)]
            for _ in range(20):
                assert call("GET", f"{server.url}/api/v1/sessions/series-mp-{suffix}/context", key=key)[0] == 200
            for _ in range(6):
                scrapes.append(_scrape(server.url))
        finally:
            server.stop()
    first, last = scrapes[0], scrapes[-1]
    for samples in scrapes:  # whichever worker answered the scrape
        assert samples[(f"{LATENCY}_count", (("model", "fake-model"), ("outcome", "error")))] == 1
        assert samples[(f"{LATENCY}_count", (("model", "fake-model"), ("outcome", "ok")))] == 1
        assert samples[(f"{LATENCY}_bucket", (("le", "0.25"), ("model", "fake-model"), ("outcome", "ok")))] == 0
        assert samples[(f"{LATENCY}_bucket", (("le", "5.0"), ("model", "fake-model"), ("outcome", "ok")))] == 1
        assert samples[(RETRIES, (("kind", "model_call"),))] == 1
        assert total(samples, "django_db_execute_total") > 0
    # The first of the 20 reads after the run missed the cache and filled it; the other 19 hit it.
    for samples in scrapes[6:]:
        for result, n in (("miss", 1), ("hit", 19)):
            assert total(samples, LOOKUPS, cache="context", result=result) == total(
                first, LOOKUPS, cache="context", result=result) + n
    queries = "django_db_query_duration_seconds_count"
    assert total(last, queries) > total(first, queries)
    served = {path.name.split("_")[-1] for path in tmp_path.glob("counter_*.db")}
    assert len(served) > 1, served  # the requests really were spread over both workers


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    status, _, text = call("GET", f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, text
    return parse(text)
