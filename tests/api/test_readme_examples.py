"""The README's "How agents call it" examples (curl and the Python client) run as printed against a live
server; only the server URL and the placeholder key differ."""

from __future__ import annotations

import pytest

from contexts.models import Message, Revision, SessionContext
from tests.api.conftest import PRINTED_KEY, PRINTED_URL, ROOT, code_blocks, run_example

README = ROOT / "README.md"
SECTION = "How agents call it"


def _example(language: str) -> str:
    (block,) = code_blocks(README, language, section=SECTION)
    # The substitutions must find something, or the example would run against the wrong server or key.
    assert PRINTED_URL in block and PRINTED_KEY in block
    return block


def _assert_the_agent_flow_happened() -> None:
    session = SessionContext.objects.get(session_id="chat-42")
    assert (session.mode, session.user_id) == ("planning", "u-7")
    assert Message.objects.filter(session=session).count() == 2
    assert session.progress == ["Dump the schema"]
    assert session.status == "handoff_requested" and session.handoff_reason == "Customer asks for a refund"
    # The agent's write (a rerun writing the same progress changes nothing and adds no revision).
    agent_write = Revision.objects.get(session=session, source="api")
    assert agent_write.changed_fields == ["progress"]


@pytest.mark.parametrize("language", ["bash", "python"])
def test_the_readme_agent_example_runs_as_printed(language, agent_env):
    result = run_example(language, _example(language), agent_env)  # curl fails the script on any 4xx/5xx

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '{"error":' not in result.stdout and "re-read" not in result.stdout
    assert "<session_context>" in result.stdout
    _assert_the_agent_flow_happened()


def test_the_readme_curl_example_runs_again_on_the_same_session(agent_env):
    # Readers run examples twice; the second run must not trip over the first (versions, retried messages).
    script = _example("bash")
    for _ in range(2):
        result = run_example("bash", script, agent_env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _assert_the_agent_flow_happened()  # the retried messages were stored once
