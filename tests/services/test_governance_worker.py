"""The periodic purge through a real Celery worker (Redis broker, PostgreSQL): the task beat sends deletes what
SESSIONCTX_RETENTION_DAYS says, as the worker's own settings have it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from contexts.models import DataDeletion, SessionContext
from contexts.tasks import purge_sessions
from tests.extraction.test_worker import cluster  # noqa: F401 - the fixture
from tests.factories import make_session

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_purges_sessions_older_than_the_retention_setting(cluster):  # noqa: F811
    _fake, start = cluster
    for session_id in ("w-old-1", "w-old-2", "w-recent"):
        make_session(session_id, content={"summary": "kept until it is old"})
    SessionContext.objects.exclude(session_id="w-recent").update(updated_at=timezone.now() - timedelta(days=31))
    start("retention", SESSIONCTX_RETENTION_DAYS="30", SESSIONCTX_DELETE_BATCH_SIZE="1")

    purge_sessions.delay()  # what beat sends every hour

    deadline = time.monotonic() + 20
    while SessionContext.objects.count() > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(SessionContext.objects.values_list("session_id", flat=True)) == ["w-recent"]
    record = DataDeletion.objects.get()
    assert (record.kind, record.actor, record.counts["sessions"], record.counts["revisions"]) == (
        "retention", "retention", 2, 2)
