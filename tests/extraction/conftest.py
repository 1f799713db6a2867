from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connection
from kombu import pools

from contexts import services
from contexts.extraction.claim import lock_key
from contexts.extraction.runs import extraction_request
from tests.fake_openai import FakeOpenAI


@pytest.fixture
def fake_model(settings):
    """The fake OpenAI-compatible server, configured as the model; client retries off, backoff tiny."""
    with FakeOpenAI() as fake:
        settings.SESSIONCTX_MODEL = "fake-model"
        settings.OPENAI_API_KEY = "test-key"
        settings.OPENAI_BASE_URL = fake.url
        settings.OPENAI_TIMEOUT = 5.0
        settings.OPENAI_MAX_RETRIES = 0
        settings.SESSIONCTX_MODEL_RETRIES = 2
        settings.SESSIONCTX_RETRY_BACKOFF = 0.01
        settings.SESSIONCTX_RETRY_BACKOFF_MAX = 0.05
        yield fake


@pytest.fixture
def extract(django_capture_on_commit_callbacks):
    """Ask for an update of a session and run it in-process (eager), as the no-broker default does."""

    def run(session, trigger="test"):
        with django_capture_on_commit_callbacks(execute=True):
            run = extraction_request(session=session, trigger=trigger)
        run.refresh_from_db()
        session.refresh_from_db()
        return run

    return run


def post(session, *messages: tuple[str, str]):
    """Store messages (role, content) on a session."""
    return services.messages_append(session=session, messages=[{"role": r, "content": c} for r, c in messages])


@contextmanager
def celery_broker(url: str):
    """Make this process publish to a real broker at `url` (not eager), restoring the app afterwards."""
    from sessionctx.celery import app

    def reset_pools():
        app._pool = None
        app.amqp._producer_pool = None
        pools.reset()  # kombu keeps pools per connection; closed ones must not be reused

    def configure(broker_url, always_eager):
        # Under its Django name too: celery 5.6 reads a setting of an app configured with namespace="CELERY" by
        # that name first, so setting `broker_url` alone changed nothing and every task ran eagerly in here.
        for name, value in (("broker_url", broker_url), ("task_always_eager", always_eager)):
            app.conf[name] = app.conf[f"CELERY_{name.upper()}"] = value

    saved = (app.conf.broker_url, app.conf.task_always_eager)
    reset_pools()
    configure(url, False)
    try:
        yield app
    finally:
        reset_pools()
        configure(*saved)


@contextmanager
def live_attempt(session):
    """An attempt on `session` that is alive: on PostgreSQL, another connection holds the session's attempt lock.

    (Elsewhere there is no such lock: only the lease tells a live attempt from a dead one.)
    """
    if connection.vendor != "postgresql":
        yield
        return
    import psycopg

    from tests.extraction.workers import database_url

    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", lock_key(session.pk))
        yield


def attempt_lock_free(session) -> bool:
    """Whether no connection holds the session's attempt lock (asked from a connection of its own)."""
    import psycopg

    from tests.extraction.workers import database_url

    key = lock_key(session.pk)
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        free = other.execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()[0]
        if free:
            other.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        return free
