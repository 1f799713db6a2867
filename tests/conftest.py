from __future__ import annotations

import pytest

from tests.factories import make_api_key


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
