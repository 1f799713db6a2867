"""The transcript on the session page reaches every message, newest last, and folds a very long one."""

from __future__ import annotations

import re

import pytest

from contexts import services
from tests.factories import make_session
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


def _seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]


@pytest.fixture
def long_conversation():
    session = make_session("t-long", user_id="carol")
    for start in range(0, 260, 50):
        services.messages_append(session=session, messages=[
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i + 1}"}
            for i in range(start, min(start + 50, 260))])
    return session


def test_the_page_opens_with_the_newest_messages_and_loads_every_earlier_one(support, long_conversation):
    html = support.get("/sessions/t-long/").content.decode()
    assert _seqs(html) == list(range(61, 261))
    link = re.search(r'<a [^>]*href="/sessions/t-long/\?(?:project=default&amp;)?before=61#transcript"'
                     r'[^>]*hx-get="(/sessions/t-long/\?before=61)"[^>]*>'
                     r"Load earlier messages", html)
    assert link, "no 'Load earlier messages' before message 61"

    earlier = support.get(link.group(1), **HTMX).content.decode()
    assert _seqs(earlier) == list(range(1, 61))
    assert "Load earlier" not in earlier and "<html" not in earlier  # the first message reached: nothing before it


def test_without_javascript_the_link_shows_the_earlier_messages_in_the_page(support, long_conversation):
    services.handoff_request(session=make_session("t-waiting"), reason="help", actor=services.Actor.system("agent"))
    html = support.get("/sessions/t-long/?before=61").content.decode()
    assert "<html" in html and _seqs(html) == list(range(1, 61))
    assert 'data-waiting="1"' in html  # the menu still counts who waits, as on every page


def test_a_50_kb_message_shows_its_start_and_a_show_all(support):
    session = make_session("t-big", user_id="carol")
    big = "START " + "lorem ipsum " * 4300 + " THE END"
    services.messages_append(session=session, messages=[{"role": "user", "content": big},
                                                        {"role": "assistant", "content": "Short answer"}])
    html = support.get("/sessions/t-big/").content.decode()
    folded = re.search(r'<div class="msg-body">START lorem ipsum.*?</div>\s*<details class="msg-more">\s*'
                       r"<summary>Show all \((\d+\.\d)\sKB\)</summary>", html, re.S)
    assert folded and float(folded.group(1)) > 49
    head, rest = html.split('<details class="msg-more">', 1)
    assert "THE END" not in head and "THE END" in rest
    assert "Short answer" in html and html.count("<details class=\"msg-more\">") == 1


def test_a_live_update_keeps_the_earlier_messages_the_person_loaded(support, long_conversation):
    page = support.get("/sessions/t-long/").content.decode()
    since = re.search(r'/sessions/t-long/live/\?since=([^"]+)"', page).group(1)
    earlier = support.get("/sessions/t-long/?before=61", **HTMX).content.decode()
    # Loading earlier messages moves where the transcript starts; the live check sends it along.
    assert re.search(r'<input type="hidden" id="transcript-from" name="transcript_from" value="1"[^>]*'
                     r'hx-swap-oob="true"', earlier)
    services.messages_append(session=long_conversation, messages=[{"role": "user", "content": "a new one"}])
    update = support.get(f"/sessions/t-long/live/?since={since}&transcript_from=1", **HTMX).content.decode()
    transcript = update.split('id="transcript"', 1)[1].split("</section>", 1)[0]
    assert _seqs(transcript) == list(range(1, 262))
