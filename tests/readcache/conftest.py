from __future__ import annotations

import pytest

from tests.api.conftest import Agent


@pytest.fixture
def agent(write_key):
    return Agent(write_key[1])


@pytest.fixture
def reader(read_key):
    return Agent(read_key[1])
