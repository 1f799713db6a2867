from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from contexts import services
from contexts.models import SessionContext
from contexts.services import Actor
from tests.factories import make_session
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


def session_ids(html: str) -> list[str]:
    return re.findall(r'<a class="mono"[^>]* href="/sessions/([^/]+)/(?:\?[^"]*)?">', html)


def test_plain_request_gets_the_full_page_with_table_and_htmx_from_our_static_files(support):
    make_session("list-1", user_id="u1", agent_id="bot", content={"goal": "Ship it", "plan": ["a", "b", "c"],
                                                                  "progress": ["a", "c"]})
    response = support.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="filters"' in html and 'id="session-table"' in html
    assert '/static/django_htmx/htmx-2.min.js' in html and "unpkg" not in html and "cdn" not in html.lower()
    assert "<script>" not in html  # no inline scripts: a CSP can forbid them
    assert """hx-headers='{"X-CSRFToken": """ in html
    assert "Ship it" in html and "2/3" in html and '<progress value="2" max="3"' in html
    assert "HX-Request" in response["Vary"]


def test_htmx_request_gets_only_the_table_partial(support):
    make_session("list-2", content={"summary": "hello"})
    response = support.get("/?q=list-2", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="session-table"') and "<html" not in html
    assert session_ids(html) == ["list-2"]
    # The table polls its own URL, so refreshing keeps the filters and the page.
    assert 'hx-get="/?q=list-2"' in html and 'hx-trigger="every 10s"' in html
    assert "HX-Request" in response["Vary"]


def test_search_matches_session_id_user_id_summary_and_goal(support):
    make_session("alpha-1", user_id="carol", content={"summary": "Printer on fire"})
    make_session("beta-2", user_id="dave", content={"goal": "Book a FLIGHT to Oslo"})
    make_session("gamma-3", user_id="erin", content={"summary": "nothing relevant"})
    assert session_ids(support.get("/?q=alpha").content.decode()) == ["alpha-1"]
    assert session_ids(support.get("/?q=carol").content.decode()) == ["alpha-1"]
    assert session_ids(support.get("/?q=printer").content.decode()) == ["alpha-1"]
    assert session_ids(support.get("/?q=flight").content.decode()) == ["beta-2"]


def test_filters_status_mode_agent_and_needs_a_human(support):
    waiting = make_session("f-wait", mode="planning", agent_id="bot-a")
    services.handoff_request(session=waiting, reason="help", actor=Actor.system("agent"))
    taken = make_session("f-taken", mode="summary", agent_id="bot-b")
    services.handoff_claim(session=taken, actor=Actor.system("someone"))
    make_session("f-active", mode="summary", agent_id="bot-a")
    ids = lambda qs: sorted(session_ids(support.get("/?" + qs).content.decode()))  # noqa: E731
    assert ids("status=handoff_requested") == ["f-wait"]
    assert ids("mode=summary") == ["f-active", "f-taken"]
    assert ids("agent=bot-a") == ["f-active", "f-wait"]
    assert ids("needs_human=on") == ["f-taken", "f-wait"]
    assert ids("needs_human=on&agent=bot-b") == ["f-taken"]


def test_no_match_and_no_sessions_have_their_own_empty_states(support):
    assert "No sessions yet" in support.get("/").content.decode()
    make_session("e-1")
    html = support.get("/?q=zzz-nothing").content.decode()
    assert "No sessions match" in html and "Clear the filters" in html


def _age(session_id: str, minutes: int) -> None:
    SessionContext.objects.filter(session_id=session_id).update(updated_at=timezone.now() - timedelta(minutes=minutes))


def test_keyset_pages_walk_forward_and_back_without_gaps_or_repeats(support):
    for i in range(60):
        make_session(f"p-{i:02d}")
        _age(f"p-{i:02d}", i)
    # Two sessions with the same timestamp: the id breaks the tie, so neither is lost between pages.
    SessionContext.objects.filter(session_id__in=["p-24", "p-25"]).update(
        updated_at=SessionContext.objects.get(session_id="p-24").updated_at)
    seen, url, pages = [], "/", []
    while url:
        html = support.get(url).content.decode()
        pages.append(url)
        seen += session_ids(html)
        match = re.search(r'href="([^"]+)"[^>]*rel="next"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert len(pages) == 3
    assert sorted(seen) == sorted(f"p-{i:02d}" for i in range(60)) and len(seen) == 60
    # Previous from the third page gives the second page again.
    html = support.get(pages[2]).content.decode()
    prev = re.search(r'href="([^"]+)"[^>]*>‹ Previous', html).group(1).replace("&amp;", "&")
    assert session_ids(support.get(prev).content.decode()) == session_ids(support.get(pages[1]).content.decode())


def test_sort_oldest_first_and_by_session_id(support):
    for i, sid in enumerate(["b-x", "a-x", "c-x"]):
        make_session(sid)
        _age(sid, i)
    assert session_ids(support.get("/?sort=updated").content.decode()) == ["c-x", "a-x", "b-x"]
    assert session_ids(support.get("/?sort=session_id").content.decode()) == ["a-x", "b-x", "c-x"]
    assert session_ids(support.get("/").content.decode()) == ["b-x", "a-x", "c-x"]


def test_a_mangled_cursor_shows_the_first_page(support):
    make_session("m-1")
    response = support.get("/?after=not-a-cursor")
    assert response.status_code == 200 and session_ids(response.content.decode()) == ["m-1"]


def test_user_text_in_the_table_is_escaped(support):
    make_session("x-1", content={"summary": "<script>alert(1)</script>"}, user_id="<b>u</b>")
    html = support.get("/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>u</b>" not in html


@pytest.mark.parametrize("query", [{"q": "zzz" * 100}, {"status": "closedd"}, {"mode": "both"}])
def test_a_search_or_filter_that_is_not_valid_lists_nothing_and_says_why(editor, query):
    make_session("alpha-1", content={"summary": "apples"})
    for headers in ({}, HTMX):
        html = editor.get("/", query, **headers).content.decode()
        assert "alpha-1" not in html and 'role="alert"' in html, headers
    assert "at most 255 characters" in editor.get("/", {"q": "zzz" * 100}).content.decode()


def test_back_to_a_list_page_htmx_did_not_keep_gets_the_whole_page(editor):
    make_session("hr-1")
    # htmx re-fetches such a page with both headers and swaps the answer into <body>.
    html = editor.get("/", {"q": "hr-1"}, HTTP_HX_REQUEST="true",
                      HTTP_HX_HISTORY_RESTORE_REQUEST="true").content.decode()
    assert 'id="filters"' in html and "<title>" in html and "hr-1" in html
    assert 'id="filters"' not in editor.get("/", {"q": "hr-1"}, **HTMX).content.decode()  # the table alone
