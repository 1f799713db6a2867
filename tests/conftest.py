from __future__ import annotations

import pytest

from contexts.infra.inprocess import discard_delayed
from tests.factories import make_api_key


@pytest.fixture(autouse=True)
def _delayed_work_ends_with_its_test():
    """A countdown a test started (a webhook retry) never fires in the next test or after the database is gone."""
    yield
    discard_delayed()


@pytest.fixture
def write_key(db):
    return make_api_key("read", "write")


@pytest.fixture
def read_key(db):
    return make_api_key("read", name="read-only agent")


@pytest.fixture
def on_postgres(settings):
    from django.db import connection

    return connection.vendor == "postgresql"
