"""/metrics under gunicorn with several workers (PROMETHEUS_MULTIPROC_DIR): every scrape, whichever worker answers
it, counts the requests all the workers served, and an empty file in the directory (a worker's, not yet sized)
does not fail it."""

from __future__ import annotations

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from tests.reliability.conftest import call
from tests.reliability.servers import Gunicorn, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_scrape_sums_the_requests_of_all_gunicorn_workers(tmp_path):
    env = subprocess_env(connection.settings_dict, METRICS_TOKEN="scrape-token",
                         PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    server = Gunicorn(env, workers=3).wait_ready()
    try:
        for _ in range(30):
            assert call("GET", f"{server.url}/api/v1/health/live")[0] == 200
        # A worker's file between its creation and its sizing, or left so by a worker killed then: empty.
        (tmp_path / "counter_999999.db").touch()
        for _ in range(6):
            status, _, text = call("GET", f"{server.url}/metrics", headers={"Authorization": "Bearer scrape-token"})
            assert status == 200, server.output()[-3000:]
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for f in text_string_to_metric_families(text) for s in f.samples}
            live = ("django_http_responses_total_by_status_view_method_total",
                    (("method", "GET"), ("status", "200"), ("view", "api-health-live")))
            assert samples[live] == 30
            assert samples[("sessionctx_database_up", ())] == 1
        served = {path.name.split("_")[-1] for path in tmp_path.glob("counter_*.db")}
        assert len(served) > 1, served  # the requests really were spread over several workers
    finally:
        server.stop()
