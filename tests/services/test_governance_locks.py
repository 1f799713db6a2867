"""Retention on PostgreSQL next to a writer: a session whose row someone holds is left for the next run, and the
purge does not wait for it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from contexts.models import SessionContext
from contexts.services import Actor
from contexts.services.governance import sessions_purge
from tests.factories import make_session

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_session_locked_by_a_writer_is_skipped_and_the_purge_does_not_wait(on_postgres):
    if not on_postgres:
        pytest.skip("SQLite has no row locks: its one writer at a time cannot hold a row while the purge runs")
    for session_id in ("lock-1", "lock-2", "lock-3"):
        make_session(session_id)
    SessionContext.objects.update(updated_at=timezone.now() - timedelta(days=100))
    held, release = threading.Event(), threading.Event()

    def writer():
        try:
            with transaction.atomic():
                SessionContext.objects.select_for_update().get(session_id="lock-2")
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert held.wait(5)
    began = time.monotonic()
    try:
        counts, _ = sessions_purge(older_than=timedelta(days=90), actor=Actor.system("test"), batch_size=2)
    finally:
        release.set()
        thread.join(10)

    assert time.monotonic() - began < 3
    assert counts["sessions"] == 2
    assert list(SessionContext.objects.values_list("session_id", flat=True)) == ["lock-2"]
