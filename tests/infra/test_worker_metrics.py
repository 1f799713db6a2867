"""A Celery worker's own figures on WORKER_METRICS_PORT: a real prefork worker extracts against the fake model, and
its port (behind METRICS_TOKEN) shows the model calls it made, summed over its pool's processes."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from contexts.models import ExtractionRun
from tests.extraction.test_worker import cluster, wait_until  # noqa: F401 - cluster is a fixture
from tests.factories import make_api_key
from tests.fake_openai import error
from tests.reliability.conftest import call
from tests.reliability.servers import free_port

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
TOKEN = "worker-metrics-token"
LATENCY = "sessionctx_model_call_latency_seconds"


def test_a_workers_port_shows_its_model_calls(cluster, settings, tmp_path):  # noqa: F811
    settings.SESSIONCTX_AUTO_UPDATE = True
    fake, start = cluster
    fake.push(error(500, "overloaded"))
    port = free_port()
    start("metrics", WORKER_METRICS_PORT=str(port), METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
          SESSIONCTX_MODEL_RETRIES="2")
    url = f"http://127.0.0.1:{port}/metrics"
    assert call("GET", url)[0] == 401
    assert call("GET", url, headers={"Authorization": "Bearer wrong"})[0] == 403
    client = Client(HTTP_AUTHORIZATION=f"Bearer {make_api_key('read', 'write')[1]}")
    response = client.post("/api/v1/sessions/wm-1/messages", content_type="application/json",
                           data={"messages": [{"role": "user", "content": "Plan my move to Porto"},
                                              {"role": "assistant", "content": "Plan:\n1. Find a flat"}]})
    assert response.status_code == 202, response.content
    run_id = response.json()["update"]["run_id"]
    run = wait_until(lambda: ExtractionRun.objects.filter(pk=run_id, status="succeeded").first(),
                     what="the worker to finish the run")
    assert run.model_calls == 2
    status, _, text = call("GET", url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[(f"{LATENCY}_count", (("model", "fake-model"), ("outcome", "error")))] == 1
    assert samples[(f"{LATENCY}_count", (("model", "fake-model"), ("outcome", "ok")))] == 1
    # The database's figures are the web's /metrics' alone: scraping both never counts a run twice.
    assert not any(name.startswith("sessionctx_extraction_runs") for name, _ in samples)
