"""The examples in docs/api.md run as printed against a live server (only the base URL differs)."""

from __future__ import annotations

from contexts.models import Revision, SessionContext
from tests.api.conftest import PRINTED_URL, ROOT, code_blocks, run_example

DOC = ROOT / "docs" / "api.md"


def blocks(language: str) -> list[str]:
    return code_blocks(DOC, language)


def test_the_curl_walkthrough_runs_and_every_call_succeeds(live_server, agent_env):
    # Key creation runs manage.py against the real database; the fixture made the key instead.
    script = "\n".join(b for b in blocks("bash") if "manage.py" not in b)
    assert script.count("curl ") >= 20
    result = run_example("bash", script, agent_env)  # curl fails the script on any 4xx/5xx
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '{"error":' not in result.stdout
    assert "<session_context>" in result.stdout
    assert result.stdout.rstrip().endswith("304")
    # The walkthrough ends by erasing its session, revisions included.
    assert not SessionContext.objects.filter(session_id__startswith="docs-").exists()
    assert not Revision.objects.exists()


def test_the_documented_key_command_prints_the_key_on_its_last_line():
    (command,) = [b for b in blocks("bash") if "manage.py" in b]
    assert "create_api_key" in command and "| tail -n 1" in command


def test_the_python_client_example_runs(live_server, agent_env):
    (client,) = code_blocks(DOC, "python", section="The Python client")
    result = run_example("python", client, agent_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "<session_context>" in result.stdout
    assert not SessionContext.objects.exists()


def test_the_relay_loop_delivers_a_persons_reply_and_stops_when_handed_back(live_server, agent_env):
    """The agent loop in docs/api.md, run as printed, while a person takes the conversation, answers and hands back."""
    import subprocess
    import sys
    import time

    from contexts import services
    from contexts.services import Actor
    from tests.factories import make_user
    from tests.roles import ensure_roles

    ensure_roles()  # a transactional test before this one flushed the role groups
    (loop,) = code_blocks(DOC, "python", section="Relaying a person's replies: an agent loop")
    env = {**agent_env, "SESSION": "relay-1"}
    agent = subprocess.Popen([sys.executable, "-c", loop.replace(PRINTED_URL, env["SESSIONCTX_URL"])], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not SessionContext.objects.filter(session_id="relay-1", status="handoff_requested").exists():
            assert agent.poll() is None and time.monotonic() < deadline, agent.communicate()
            time.sleep(0.1)
        alice = Actor.for_user(make_user("alice", role="support"))
        session = services.handoff_claim(session=SessionContext.objects.get(session_id="relay-1"), actor=alice)
        services.handoff_reply(session=session, content="Your refund is on its way.", actor=alice)
        services.handoff_release(session=session, note="refunded in full", actor=alice)
        out, err = agent.communicate(timeout=60)
    finally:
        agent.kill()
    assert agent.returncode == 0, err[-3000:]
    assert out.splitlines() == ["to the customer: Your refund is on its way.", "back to the agent: refunded in full"]


def test_every_endpoint_appears_in_the_guide():
    from tests.api.test_auth import REQUIRED_SCOPE

    text = DOC.read_text()
    for name, method in REQUIRED_SCOPE:
        suffix = {
            "api-health": "/health", "api-health-live": "/health/live", "api-health-ready": "/health/ready",
            "api-sessions": "/sessions?", "api-session": "/sessions/$SESSION ",
            "api-context": "/context ", "api-context-prompt": "/context/prompt", "api-context-reset": "/context/reset",
            "api-context-update": "/context/update", "api-revisions": "/revisions?",
            "api-revision-revert": "/revert", "api-messages": "/messages", "api-handoff": "/handoff",
            "api-locks": "/locks",
            "api-session-runs": "/runs ", "api-run": "/runs/$RUN", "api-events": "/events?",
            "api-session-usage": "/usage ",
            "api-session-export": "/sessions/$SESSION/export", "api-user-export": "/users/u-7/export",
            "api-user": "/users/$END_USER ",
        }[name]
        assert suffix in text, (name, method)
        if method not in ("get",):
            assert f"-X {method.upper()} " in text, (name, method)
