from __future__ import annotations

import pytest

from contexts import services
from contexts.models import ExtractionRun
from contexts.services import Actor
from tests.factories import make_session
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


@pytest.fixture
def planned():
    session = make_session("d-1", user_id="carol", agent_id="bot", content={
        "summary": "Carol wants a refund.", "goal": "Refund Carol",
        "plan": ["Verify charges", "Issue refund", "Tell Carol"], "progress": ["Verify charges"],
    })
    services.messages_append(session=session, messages=[{"role": "user", "content": "I was charged twice"},
                                                        {"role": "assistant", "content": "Checking"}])
    return services.snapshot_update(session=session, expected_version=session.version, source="api",
                                    actor=Actor.system("agent"),
                                    changes={"summary": "Carol wants a refund for a double charge.",
                                             "progress": ["Verify charges", "Issue refund"]})


def test_detail_shows_summary_goal_checklist_progress_and_transcript(support, planned):
    response = support.get("/sessions/d-1/")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert "Carol wants a refund for a double charge." in html and "Refund Carol" in html
    assert '<progress class="wide" value="2" max="3"' in html and "2/3" in html
    assert html.count('<li class="done">') == 2 and "Tell Carol" in html
    assert "I was charged twice" in html and "Checking" in html


def test_history_shows_a_field_by_field_diff_between_versions(support, planned):
    html = support.get("/sessions/d-1/").content.decode()
    assert 'id="v2"' in html and 'id="v1"' in html
    v2 = html[html.index('id="v2"'):html.index('id="v1"')]
    assert "<dt>Summary</dt>" in v2 and "<ins> for a double charge</ins>" in v2
    assert "<dt>Progress</dt>" in v2 and "<ins>+ Issue refund</ins>" in v2
    assert "<dt>Goal</dt>" not in v2  # unchanged fields are not listed


def test_a_failed_extraction_run_shows_its_error_and_tokens(support, planned):
    ExtractionRun.objects.create(session=planned, status="failed", trigger="auto", extractor="model",
                                 model="gpt-test", prompt_tokens=812, completion_tokens=0,
                                 error="Model answered invalid JSON: <oops>")
    ExtractionRun.objects.create(session=planned, status="succeeded", prompt_tokens=500, completion_tokens=120)
    html = support.get("/sessions/d-1/").content.decode()
    assert "badge-run-failed" in html and "Model answered invalid JSON: &lt;oops&gt;" in html
    assert "812 prompt + 0 completion tokens" in html and "500 prompt + 120 completion tokens" in html


def test_empty_session_has_empty_states(support):
    make_session("d-empty", mode="summary")
    html = support.get("/sessions/d-empty/").content.decode()
    assert "The context is empty" in html and "No messages yet." in html
    assert "No extraction has run" in html and "No handoffs yet." in html and "No revisions yet" in html


def test_unknown_session_answers_404_naming_it(support):
    response = support.get("/sessions/no-such-session/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Session &#x27;no-such-session&#x27; does not exist." in html and "<html" in html


def test_unknown_page_answers_404_naming_the_path(support):
    response = support.get("/no/such/page/")
    assert response.status_code == 404
    assert "There is no page at <code>/no/such/page/</code>" in response.content.decode()


def test_script_in_a_summary_is_rendered_escaped_everywhere(editor):
    session = make_session("xss-1", content={"summary": "<script>alert('x')</script>", "goal": "<img src=x onerror=1>",
                                             "plan": ["<b>step</b>"]})
    services.messages_append(session=session, messages=[{"role": "user", "content": "<script>m()</script>"}])
    services.handoff_request(session=session, reason="<script>r()</script>", actor=Actor.system("agent"))
    for url in ("/sessions/xss-1/", "/sessions/xss-1/edit/", "/", "/handoffs/"):
        html = editor.get(url).content.decode()
        assert "<script>alert" not in html and "<script>m()" not in html and "<script>r()" not in html, url
        assert "<img src=x" not in html and "<b>step</b>" not in html, url
    html = editor.get("/sessions/xss-1/").content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_htmx_request_for_detail_gets_the_body_partial(support, planned):
    html = support.get("/sessions/d-1/", **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="session-body"') and "<html" not in html


def test_edit_form_loads_with_the_current_version_and_plan_rows(editor, planned):
    plain = editor.get("/sessions/d-1/edit/").content.decode()
    partial = editor.get("/sessions/d-1/edit/", **HTMX).content.decode()
    assert "<html" in plain and "<html" not in partial
    for html in (plain, partial):
        assert 'name="version" value="2"' in html
        assert html.count('name="step_text"') == 5  # three steps, the blank "new" row, the template row
        assert 'name="step_done" value="r2" aria-label="Step 2 done" checked' in html
