"""LOG_LEVEL sets a worker's level as it does the web's (docs/operations.md), whatever level Celery's -l names."""

from __future__ import annotations

import shutil
import time

import pytest
from django.db import connection

from tests.extraction.workers import Worker
from tests.reliability.servers import RedisServer, subprocess_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_log_level_warning_quiets_a_worker_started_with_celerys_info():
    if connection.vendor != "postgresql":
        pytest.skip("worker tests need PostgreSQL (set DATABASE_URL)")
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    broker = RedisServer().start()
    env = subprocess_env(connection.settings_dict, CELERY_BROKER_URL=broker.url)
    worker = Worker("log-level", queue="log-level", env=env, log_level="WARNING")  # started with -l info
    try:
        deadline = time.monotonic() + 90
        while not broker.has_consumer():
            assert worker.process.poll() is None and time.monotonic() < deadline, worker.output()[-3000:]
            time.sleep(0.2)
        time.sleep(2)  # what it logs once consuming ("... ready.", its startup sweep)
        info = [line for line in worker.output().splitlines() if " INFO " in line]
        assert not info, info[:3]
    finally:
        worker.stop()
        broker.remove()
