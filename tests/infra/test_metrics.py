"""/metrics: refused without the token, and after a run shows that run's counters, tokens, queue and handoffs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from contexts.models import Event, ExtractionRun, SessionContext, Status, WebhookDelivery
from contexts.services.webhooks import webhook_endpoint_create
from tests.api.conftest import Agent
from tests.factories import make_api_key, make_session

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-for-tests"
TURN = [{"role": "user", "content": "Plan my trip to Lisbon"},
        {"role": "assistant", "content": "Plan:\n1. Book flights\n2. Book a hotel"}]


def scrape(token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client().get("/metrics", headers=headers)


def samples(response) -> dict[tuple[str, tuple], float]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}


def test_metrics_are_404_until_a_token_is_set_then_refused_without_it(settings):
    settings.METRICS_TOKEN = ""
    assert scrape().status_code == 404
    settings.METRICS_TOKEN = TOKEN
    missing = scrape(None)
    assert (missing.status_code, missing["WWW-Authenticate"]) == (401, 'Bearer realm="metrics"')
    assert scrape("wrong").status_code == 403
    assert Client().get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert scrape().status_code == 200


def test_a_scrape_after_a_run_finds_its_counters(settings, django_capture_on_commit_callbacks):
    settings.METRICS_TOKEN = TOKEN
    settings.SESSIONCTX_AUTO_UPDATE = True
    before = samples(scrape())
    agent = Agent(make_api_key("read", "write")[1])
    with django_capture_on_commit_callbacks(execute=True):
        body = agent.post("/api/v1/sessions/metrics-1/messages", {"mode": "planning", "messages": TURN}).json()
    run = ExtractionRun.objects.get(pk=body["update"]["run_id"])
    assert run.status == "succeeded"
    # Tokens by model, as a model-driven run records them.
    ExtractionRun.objects.create(session=run.session, status="failed", extractor="openai", model="gpt-test",
                                 prompt_tokens=1200, completion_tokens=80, latency_ms=3400)
    # One run waiting 90 s, one session waiting 5 minutes for a person.
    queued = ExtractionRun.objects.create(session=make_session("metrics-2"))
    ExtractionRun.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    waiting = make_session("metrics-3")
    assert agent.post("/api/v1/sessions/metrics-3/handoff", {"reason": "refund"}).status_code == 200
    SessionContext.objects.filter(pk=waiting.pk).update(handoff_requested_at=timezone.now() - timedelta(minutes=5))

    after = samples(scrape())
    runs = ("sessionctx_extraction_runs_total", (("extractor", run.extractor), ("status", "succeeded")))
    assert after[runs] == before.get(runs, 0) + 1
    assert after[("sessionctx_database_up", ())] == 1
    assert after[("sessionctx_extraction_runs_total", (("extractor", "openai"), ("status", "failed")))] == 1
    assert after[("sessionctx_model_tokens_total", (("direction", "in"), ("model", "gpt-test")))] == 1200
    assert after[("sessionctx_model_tokens_total", (("direction", "out"), ("model", "gpt-test")))] == 80
    latency = "sessionctx_extraction_run_latency_seconds"
    assert after[(f"{latency}_bucket", (("extractor", "openai"), ("le", "2.5")))] == 0
    assert after[(f"{latency}_bucket", (("extractor", "openai"), ("le", "5.0")))] == 1
    assert after[(f"{latency}_count", (("extractor", "openai"),))] == 1
    assert after[(f"{latency}_sum", (("extractor", "openai"),))] == pytest.approx(3.4)
    assert after[("sessionctx_extraction_runs_queued", ())] == 1
    assert 90 <= after[("sessionctx_extraction_oldest_queued_age_seconds", ())] < 120
    assert after[("sessionctx_handoffs_waiting", ())] == 1
    assert 300 <= after[("sessionctx_handoff_longest_wait_seconds", ())] < 330
    assert SessionContext.objects.get(pk=waiting.pk).status == Status.HANDOFF_REQUESTED
    # django-prometheus's HTTP side counts the API call above.
    assert any(name == "django_http_responses_total_by_status_view_method_total"
               and dict(labels).get("view") == "api-messages" for name, labels in after)


def test_a_delivery_no_webhook_worker_takes_shows_its_wait(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    assert samples(scrape())[("sessionctx_webhook_oldest_due_age_seconds", ())] == 0
    endpoint = webhook_endpoint_create(url="http://127.0.0.1:9/hook")
    session = make_session("metrics-hook")
    event = Event.objects.create(project_id=session.project_id, session=session, type="handoff.requested", data={})
    now = timezone.now()
    # Due 7 minutes ago and never attempted (no worker takes the webhook queue); one being attempted now (its
    # lease ahead) and one waiting for its retry are not behind.
    WebhookDelivery.objects.create(endpoint=endpoint, event=event, next_attempt_at=now - timedelta(minutes=7))
    other = Event.objects.create(project_id=session.project_id, session=session, type="handoff.taken", data={})
    WebhookDelivery.objects.create(endpoint=endpoint, event=other, next_attempt_at=now + timedelta(seconds=50))
    assert 420 <= samples(scrape())[("sessionctx_webhook_oldest_due_age_seconds", ())] < 450
    # An endpoint an admin disabled keeps its deliveries for later: nobody is behind on those.
    endpoint.is_active = False
    endpoint.save()
    assert samples(scrape())[("sessionctx_webhook_oldest_due_age_seconds", ())] == 0
