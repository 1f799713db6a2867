"""The read path answers exactly what the serializers document, and throttles per key in Redis."""

from __future__ import annotations

import json
import os

import pytest
import redis
from django.core.cache import caches
from rest_framework.renderers import JSONRenderer

from contexts import services
from contexts.api.serializers import ContextOutputSerializer, PromptOutputSerializer
from contexts.prompting import render_prompt
from contexts.services import Actor
from tests.api.conftest import Agent, assert_error, etag_of
from tests.factories import make_api_key, make_session, make_user

pytestmark = pytest.mark.django_db


def _documented(serializer) -> dict:
    """What the serializer would have answered, through the same JSON renderer."""
    return json.loads(JSONRenderer().render(serializer.data))


@pytest.mark.parametrize("kind", ["planning with a person", "summary", "empty"])
def test_context_answer_is_the_serializers_answer_field_for_field(reader, kind):
    if kind == "planning with a person":
        session = make_session("fast-1", mode="planning", user_id="u-1", agent_id="a-1", team_id="t-1",
                               content={"summary": "Booking ünicode ✓", "goal": "A flight", "plan": ["Pick", "Pay"],
                                        "progress": ["Pick"], "handoff_note": "Called the airline"})
        services.handoff_request(session=session, reason="Stuck", actor=Actor.system("test"))
        session.refresh_from_db()
        services.handoff_claim(session=session, actor=Actor.for_user(make_user("maria", superuser=True)))
    elif kind == "summary":
        session = make_session("fast-2", mode="summary", content={"summary": "Only a summary"})
    else:
        session = make_session("fast-3", mode="summary")
    session.refresh_from_db()

    response = reader.get(f"/api/v1/sessions/{session.session_id}/context")

    assert response.status_code == 200
    assert response.json() == _documented(ContextOutputSerializer(session))
    assert response["ETag"] == etag_of(session.session_id, session.version)
    if kind == "planning with a person":
        assert response.json()["assignee"] == "maria" and response.json()["status"] == "human"


def test_prompt_as_json_is_the_serializers_answer(reader):
    session = make_session("fast-p", content={"summary": "S", "goal": "G", "plan": ["a"]})
    response = reader.get("/api/v1/sessions/fast-p/context/prompt", headers={"Accept": "application/json"})
    expected = _documented(PromptOutputSerializer({"prompt": render_prompt(session), "version": session.version}))
    assert response.status_code == 200 and response.json() == expected
    assert "Goal: G" in expected["prompt"]


@pytest.mark.parametrize("cached", [True, False])
def test_a_current_etag_is_answered_304_without_a_body(reader, settings, cached):
    settings.SESSIONCTX_READ_CACHE = cached
    make_session("fast-304", content={"summary": "x" * 3000})
    reader.get("/api/v1/sessions/fast-304/context")  # fills the cache where there is one
    current = etag_of("fast-304")
    response = reader.get("/api/v1/sessions/fast-304/context", headers={"If-None-Match": f'W/{current}, "7"'})
    assert response.status_code == 304 and response["ETag"] == current and response.content == b""


def test_a_stale_etag_gets_the_full_context_and_a_missing_session_is_404(reader):
    make_session("fast-stale", content={"summary": "new"})
    response = reader.get("/api/v1/sessions/fast-stale/context", headers={"If-None-Match": etag_of("fast-stale", 0)})
    assert response.status_code == 200 and response.json()["summary"] == "new"
    assert_error(reader.get("/api/v1/sessions/nope/context", headers={"If-None-Match": "*"}), 404, "not_found")


def test_a_revoked_key_is_refused_on_the_read_path_at_once(read_key):
    key, raw = read_key
    make_session("fast-rev")
    agent = Agent(raw)
    assert agent.get("/api/v1/sessions/fast-rev/context").status_code == 200
    services.api_key_revoke(api_key=key)
    assert_error(agent.get("/api/v1/sessions/fast-rev/context", headers={"If-None-Match": '"0"'}), 401)


REDIS_URL = os.environ.get("TEST_REDIS_URL")


@pytest.mark.skipif(not REDIS_URL, reason="set TEST_REDIS_URL to throttle against a real Redis")
def test_throttle_counts_per_key_in_redis_and_the_window_expires(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"}}
    caches["default"].clear()
    try:
        make_session("fast-thr")
        busy_key, busy_raw = make_api_key("read", name="busy")
        busy, other = Agent(busy_raw), Agent(make_api_key("read", name="other")[1])
        for _ in range(3):
            assert busy.get("/api/v1/sessions/fast-thr/context").status_code == 200
        response = busy.get("/api/v1/sessions/fast-thr/context")
        assert_error(response, 429, "throttled")
        assert 1 <= int(response["Retry-After"]) <= 60
        assert other.get("/api/v1/sessions/fast-thr/context").status_code == 200
        # The counter carries its window's expiry, so a throttled key is never throttled for good.
        client = redis.Redis.from_url(REDIS_URL)
        counters = client.keys(f"*key-{busy_key.key_hash[:32]}*")
        assert counters and all(0 < client.ttl(k) <= 60 for k in counters)
    finally:
        caches["default"].clear()
