"""Schemathesis against /api/schema/ on a real gunicorn with a valid key: every check, valid and invalid data.

Every operation in the schema gets generated requests, schema-valid and schema-violating (the examples, coverage
and fuzzing phases); every answer must pass every check schemathesis has: no 5xx; statuses, content types,
headers and bodies as documented; what the schema allows is accepted and what it forbids is refused; auth is
not ignored; unsupported methods answer 405 with Allow.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from django.db import connection

from tests.factories import make_api_key, make_session
from tests.reliability.servers import ROOT, Gunicorn, subprocess_env

EXAMPLES_PER_OPERATION = 10
# A schema-valid write may still meet a newer version (412) or come without any version at all (428: OpenAPI
# cannot say "If-Match or a `version` field"), and a message may come under a key another message already has
# (422); each depends on state or on two places at once, as 409 does.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "428", "429", "5xx"]
"""


@pytest.fixture
def server(transactional_db, tmp_path):
    # A few sessions the generated ids may hit, with content, so not every answer is a 404.
    for session_id in ("a", "0", "s-1"):
        make_session(session_id, mode="planning", content={"summary": "Booking a trip", "plan": ["Pick dates"]})
    # The events long-poll may hold an answer up to its documented maximum: a short one keeps the run quick.
    env = subprocess_env(connection.settings_dict, SESSIONCTX_EVENTS_MAX_WAIT="1", API_THROTTLE_RATE="100000/min")
    gunicorn = Gunicorn(env, workers=2, threads=4).wait_ready()
    yield gunicorn
    gunicorn.stop()


def test_every_operation_passes_every_check_with_valid_and_invalid_data(server, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    key = make_api_key("read", "write")[1]
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
         f"{server.url}/api/schema/", "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing",
         "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "1", "--request-timeout", "10",
         "-H", f"Authorization: Bearer {key}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    summary = run.stdout[run.stdout.find("SUMMARY"):]
    print(summary)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    tested = re.search(r"Tested: (\d+)", summary)
    # Every operation of the schema ran, and the schema lists the whole API.
    assert selected and tested and selected[1] == selected[2] == tested[1] and int(tested[1]) >= 15, summary
