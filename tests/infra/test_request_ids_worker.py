"""One request id from the API post, through the broker, into a real Celery worker's log lines and the run."""

from __future__ import annotations

import pytest
from django.test import Client

from contexts.models import ExtractionRun
from tests.extraction.test_worker import cluster, wait_until  # noqa: F401 - cluster is a fixture
from tests.factories import make_api_key

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_request_id_follows_the_run_into_the_worker_and_its_record(cluster, settings):  # noqa: F811
    settings.SESSIONCTX_AUTO_UPDATE = True
    _, start = cluster
    worker = start("rid")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {make_api_key('read', 'write')[1]}")
    response = client.post("/api/v1/sessions/rid-w/messages", content_type="application/json",
                           headers={"X-Request-ID": "trace-0123-abcd"},
                           data={"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]})
    assert response.status_code == 202, response.content
    assert response["X-Request-ID"] == "trace-0123-abcd"
    run_id = response.json()["update"]["run_id"]
    run = wait_until(lambda: ExtractionRun.objects.filter(pk=run_id, status="succeeded").first(),
                     what="the worker to finish the run")
    assert run.request_id == "trace-0123-abcd"
    assert client.get(f"/api/v1/runs/{run_id}").json()["request_id"] == "trace-0123-abcd"
    worker_lines = wait_until(lambda: [line for line in worker.output().splitlines()
                                       if "[trace-0123-abcd]" in line and "contexts.extract_context" in line],
                              what="the worker's log lines with the request id")
    print("\n".join(worker_lines))
