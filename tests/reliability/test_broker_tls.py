"""A broker over TLS (rediss://) is used only when its certificate checks out: a worker never sends a task over a
connection anyone in the middle could read."""

from __future__ import annotations

import shutil
import time

import pytest
from django.db import connection

from tests.extraction.workers import Worker
from tests.reliability.servers import RedisServer, subprocess_env

pytestmark = pytest.mark.worker


def test_a_worker_refuses_a_tls_broker_whose_certificate_it_cannot_verify():
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    broker = RedisServer(tls=True).start()
    # The URL names no CA: the system's CAs do not know the test's own, as they would not know an impostor's.
    env = subprocess_env(connection.settings_dict, CELERY_BROKER_URL=broker.untrusted_url, CELERY_QUEUE="tls-check")
    worker = Worker("tls-untrusted", queue="tls-check", env=env)
    try:
        deadline = time.monotonic() + 60
        while "CERTIFICATE_VERIFY_FAILED" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "CERTIFICATE_VERIFY_FAILED" in worker.output(), worker.output()[-3000:]
        assert " ready." not in worker.output() and not broker.has_consumer()
    finally:
        worker.kill()
        worker.stop()
        broker.remove()
