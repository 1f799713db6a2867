"""The handoff desk in the staff pages: the owner answers, others see who owns it, the pages update themselves."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contexts import services
from contexts.models import Event, HandoffEvent, Message, SessionContext
from contexts.services import Actor
from tests.factories import make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(db):
    return make_user("alice", role="support")


@pytest.fixture
def bob(db):
    return make_user("bob", role="support")


@pytest.fixture
def waiting():
    session = make_session("desk-1", user_id="carol", content={"summary": "Carol wants a refund"})
    services.messages_append(session=session, messages=[{"role": "user", "content": "I was charged twice."}])
    return services.handoff_request(session=session, reason="Refunds need a human.", actor=Actor.system("agent"))


@pytest.fixture
def taken_by_alice(waiting, alice):
    return services.handoff_claim(session=waiting, actor=Actor.for_user(alice))


def live_url(page: str) -> str:
    return re.search(r'id="live"[^>]* hx-get="([^"]+)"', page).group(1)


def ids_in(html: str) -> list[str]:
    return re.findall(r'<\w+ id="([\w-]+)"', html)


# --- reply, ownership, take over ------------------------------------------------------------------


def test_after_take_the_owner_gets_a_reply_box_and_the_reply_is_stored_with_its_author(alice, waiting):
    client = logged_in(alice)
    assert 'data-action="reply"' not in client.get("/sessions/desk-1/").content.decode()
    client.post("/sessions/desk-1/take/", **HTMX)
    assert 'data-action="reply"' in client.get("/sessions/desk-1/").content.decode()

    response = client.post("/sessions/desk-1/reply/", {"content": "  We refunded the second charge.  "}, **HTMX)
    assert response.status_code == 200
    reply = Message.objects.get(session=waiting, author=alice)
    assert (reply.role, reply.content, reply.seq) == ("assistant", "We refunded the second charge.", 2)
    event = Event.objects.get(session=waiting, type=Event.Type.STAFF_REPLY)
    assert event.data["author"] == "alice" and event.data["content"] == "We refunded the second charge."
    html = response.content.decode()
    # The transcript shows it as alice's, and the reply box comes back empty for the next one.
    assert "alice (staff)" in html and "We refunded the second charge." in html
    assert re.search(r'<textarea id="reply-text"[^>]*></textarea>', html)
    assert "Reply sent" in html
    assert "alice (staff)" in client.get("/sessions/desk-1/").content.decode()


def test_a_plain_form_reply_redirects_to_the_page(alice, taken_by_alice):
    response = logged_in(alice).post("/sessions/desk-1/reply/", {"content": "Hello Carol"})
    assert response.status_code == 302 and response["Location"] == "/sessions/desk-1/"
    assert Message.objects.filter(session=taken_by_alice, author=alice, content="Hello Carol").exists()


def test_an_empty_reply_is_refused_in_place_and_stores_nothing(alice, taken_by_alice):
    response = logged_in(alice).post("/sessions/desk-1/reply/", {"content": "   "}, **HTMX)
    assert response.status_code == 400 and response["HX-Reswap"] == "none"
    assert "Reply: This field is required." in response.content.decode()
    assert not Message.objects.filter(author=alice).exists()


def test_a_non_owner_sees_who_owns_it_and_no_reply_hand_back_or_close_controls(bob, taken_by_alice):
    page = logged_in(bob).get("/sessions/desk-1/").content.decode()
    assert "alice owns this conversation" in page
    for action in ("reply", "release", "close", "take", "take-over"):
        assert f'data-action="{action}"' not in page, action
    assert 'data-action="note"' in page  # internal notes stay open to every handler


@pytest.mark.parametrize(("path", "data"), [
    ("reply", {"content": "Bob's answer"}),
    ("release", {"note": "Bob hands back"}),
    ("close", {"note": "Bob closes"}),
])
def test_a_non_owners_action_is_refused_with_the_owners_name_and_changes_nothing(bob, taken_by_alice, path, data):
    before = SessionContext.objects.get(pk=taken_by_alice.pk)
    events = Event.objects.count()
    response = logged_in(bob).post(f"/sessions/desk-1/{path}/", data, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert "alice owns this conversation: only they can" in html
    # The page shows the current state in place of the controls bob saw.
    assert 'data-action="reply"' not in html and 'data-action="release"' not in html
    after = SessionContext.objects.get(pk=taken_by_alice.pk)
    assert (after.status, after.assignee_id, after.version, after.last_message_seq) == (
        "human", before.assignee_id, before.version, before.last_message_seq)
    assert Event.objects.count() == events
    if path == "reply":
        assert 'data-field="unsent-reply"' in html and "Bob&#x27;s answer" in html


def test_an_editor_takes_over_from_the_owner_explicitly_and_it_is_recorded(editor, editor_user, taken_by_alice):
    page = editor.get("/sessions/desk-1/").content.decode()
    assert "Take over from alice…" in page and 'data-action="take-over"' in page
    assert 'data-action="reply"' not in page

    response = editor.post("/sessions/desk-1/take-over/", **HTMX)
    assert response.status_code == 200
    session = SessionContext.objects.get(pk=taken_by_alice.pk)
    assert session.status == "human" and session.assignee == editor_user
    assert Event.objects.filter(session=session, type=Event.Type.HANDOFF_TAKEN_OVER,
                                data__previous_assignee="alice").exists()
    assert HandoffEvent.objects.filter(session=session, kind="claimed", note="Taken over from alice").exists()
    html = response.content.decode()
    assert 'data-action="reply"' in html and "eve-editor (you)" in html


def test_a_take_over_confirmed_for_one_owner_is_refused_when_someone_else_owns_it_by_then(editor, taken_by_alice):
    page = editor.get("/sessions/desk-1/").content.decode()
    assert 'name="from_owner" value="alice"' in page
    # Between the page and the click, another editor took it over from alice.
    ed = make_user("ed", role="editor")
    services.handoff_take_over(session=taken_by_alice, actor=Actor.for_user(ed))
    response = editor.post("/sessions/desk-1/take-over/", {"from_owner": "alice"}, **HTMX)
    assert response.status_code == 409
    assert "ed owns it now, not alice" in response.content.decode()
    session = SessionContext.objects.get(pk=taken_by_alice.pk)
    assert session.assignee == ed
    assert Event.objects.filter(session=session, type=Event.Type.HANDOFF_TAKEN_OVER).count() == 1


def test_support_cannot_take_over_and_nothing_changes(support, taken_by_alice, alice):
    assert "Take over from" not in support.get("/sessions/desk-1/").content.decode()
    refused = support.post("/sessions/desk-1/take-over/", **HTMX)
    # Said as what it is, not as "edit or reset contexts".
    assert refused.status_code == 403 and "permission to take a conversation over" in refused.content.decode()
    session = SessionContext.objects.get(pk=taken_by_alice.pk)
    assert session.assignee == alice and not Event.objects.filter(type=Event.Type.HANDOFF_TAKEN_OVER).exists()


# --- the detail page updates itself ---------------------------------------------------------------


def test_the_live_check_answers_204_until_the_session_changes(alice, taken_by_alice):
    client = logged_in(alice)
    url = live_url(client.get("/sessions/desk-1/").content.decode())
    assert client.get(url, **HTMX).status_code == 204
    # Without htmx it is not a page of its own.
    assert client.get(url).status_code == 302


def test_a_new_customer_message_re_renders_the_transcript_but_never_the_reply_box(alice, taken_by_alice):
    client = logged_in(alice)
    url = live_url(client.get("/sessions/desk-1/").content.decode())
    services.messages_append(session=taken_by_alice, messages=[{"role": "user", "content": "Any news?"}])
    response = client.get(url, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Any news?" in html
    assert ids_in(html)[0] == "live" and {"transcript", "session-head"} <= set(ids_in(html))
    assert "reply-box" not in ids_in(html) and "session-actions" not in ids_in(html)
    assert 'hx-swap-oob="true"' in html[html.index('id="transcript"') - 40:]
    # The new token: the next poll is quiet again.
    assert client.get(live_url(html), **HTMX).status_code == 204


def test_someone_elses_take_over_re_renders_the_controls_and_the_reply_box(alice, editor_user, taken_by_alice):
    client = logged_in(alice)
    url = live_url(client.get("/sessions/desk-1/").content.decode())
    services.handoff_take_over(session=taken_by_alice, actor=Actor.for_user(editor_user))
    html = client.get(url, **HTMX).content.decode()
    assert {"session-head", "session-actions", "reply-box", "handoff-timeline"} <= set(ids_in(html))
    assert "eve-editor owns this conversation" in html and 'data-action="reply"' not in html


def test_a_new_version_leaves_an_open_edit_form_alone(editor, editor_user, waiting):
    url = live_url(editor.get("/sessions/desk-1/").content.decode())
    services.snapshot_update(session=waiting, expected_version=waiting.version, changes={"summary": "Newer"},
                             source="api", actor=Actor.system("agent"))
    changed = ids_in(editor.get(url, **HTMX).content.decode())
    # The transcript too: an extraction's new version moves its "not yet summarised" marks.
    assert "snapshot-panel" in changed and "transcript" in changed
    # hx-include sends the open form's version field along: the form is not replaced under the person.
    editing = editor.get(url, {"version": str(waiting.version)}, **HTMX).content.decode()
    assert "snapshot-panel" not in ids_in(editing) and "session-head" in ids_in(editing)


def test_an_action_answer_carries_the_new_live_token(alice, taken_by_alice):
    client = logged_in(alice)
    html = client.post("/sessions/desk-1/reply/", {"content": "On it"}, **HTMX).content.decode()
    # Otherwise the next poll would see an old token and re-render (empty) the reply box just typed into.
    assert client.get(live_url(html), **HTMX).status_code == 204


# --- the queue, the badge, the title --------------------------------------------------------------


def test_the_queue_poll_is_quiet_until_a_request_arrives_then_shows_it_with_the_badge(support):
    make_session("desk-2")
    page = support.get("/handoffs/").content.decode()
    assert 'hx-trigger="every 3s"' in page
    poll = re.search(r'<div id="handoff-queue" hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert support.get(poll, **HTMX).status_code == 204

    services.handoff_request(session=SessionContext.objects.get(session_id="desk-2"), reason="Angry customer",
                             actor=Actor.system("agent"))
    response = support.get(poll, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "desk-2" in html and "Angry customer" in html
    badge = re.search(r'<span id="waiting-badge"[^>]*>(\d+)</span>', html)
    assert badge and badge.group(1) == "1" and 'hx-swap-oob="true"' in badge.group(0)
    assert re.search(r'id="waiting-title"[^>]*>Waiting for a person <span class="count">1</span>', html)


def test_the_badge_and_title_show_the_waiting_count_and_hide_at_zero(support):
    page = support.get("/").content.decode()
    badge = re.search(r'<span id="waiting-badge"[^>]*>', page).group(0)
    assert " hidden" in badge and "<title>Sessions" in page  # never a red 0, nor "(0)" in the title
    for i in range(2):
        services.handoff_request(session=make_session(f"desk-w{i}"), reason="help", actor=Actor.system("agent"))
    page = support.get("/").content.decode()
    badge = re.search(r'<span id="waiting-badge"[^>]*>(\d+)</span>', page)
    assert badge.group(1) == "2" and " hidden" not in badge.group(0) and "<title>(2) Sessions" in page
    # Every page but the queue polls the badge; it answers 204 while the count holds.
    poll = re.search(r'hx-get="(/handoffs/badge/[^"]*)"', badge.group(0)).group(1)
    assert support.get(poll, **HTMX).status_code == 204
    services.handoff_request(session=make_session("desk-w2"), reason="help", actor=Actor.system("agent"))
    assert re.search(r'data-waiting="3"', support.get(poll, **HTMX).content.decode())


def test_mine_shows_only_the_conversations_i_own(alice, bob, waiting):
    other = make_session("desk-3")
    services.handoff_claim(session=waiting, actor=Actor.for_user(alice))
    services.handoff_claim(session=other, actor=Actor.for_user(bob))
    services.handoff_request(session=make_session("desk-4"), reason="new one", actor=Actor.system("agent"))
    client = logged_in(alice)
    everything = client.get("/handoffs/").content.decode()
    assert "desk-1" in everything and "desk-3" in everything and "desk-4" in everything
    mine = client.get("/handoffs/?mine=1").content.decode()
    assert "desk-1" in mine and "desk-3" not in mine and "desk-4" not in mine
    # Its refresh keeps the filter.
    assert re.search(r'<div id="handoff-queue" hx-get="/handoffs/\?mine=1&amp;since=', mine)


def test_a_request_waiting_longer_than_the_setting_is_highlighted(support, settings):
    settings.SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES = 5
    for name in ("desk-old", "desk-new"):
        services.handoff_request(session=make_session(name), reason="help", actor=Actor.system("agent"))
    SessionContext.objects.filter(session_id="desk-old").update(
        handoff_requested_at=timezone.now() - timedelta(minutes=6))
    page = support.get("/handoffs/").content.decode()
    rows = {sid: css for css, sid in re.findall(r'<tr class="([^"]*)" data-session="([\w-]+)"', page)}
    assert rows == {"desk-old": "overdue", "desk-new": ""}
    assert "Waiting longer than 5 minutes" in page


@pytest.mark.parametrize(("url", "trigger"), [
    ("/sessions/desk-1/live/?since=x", "live"),
    ("/handoffs/badge/?since=0", "waiting-badge"),
    ("/handoffs/?since=x", "handoff-queue"),
])
def test_a_poll_after_signing_out_stops_and_says_so_instead_of_leaving_the_page(client, waiting, url, trigger):
    # Signed out in another tab: a poll that sent this page to the login page would throw away what is typed here.
    response = client.get(url, HTTP_HX_TRIGGER=trigger, **HTMX)
    assert response.status_code == 286 and response["HX-Reswap"] == "none"
    assert "HX-Redirect" not in response
    assert "You are signed out" in response.content.decode()
    # An action is not sent, and the page stays with what was typed (it went to the login page, losing it).
    action = client.post("/sessions/desk-1/reply/", {"content": "hi"}, **HTMX)
    assert action.status_code == 403 and "HX-Redirect" not in action
    assert "this was not sent" in action.content.decode() and action["HX-Retarget"] == "#flash"
    assert not Message.objects.filter(content="hi").exists()


def test_the_timeline_shows_the_note_just_added_on_a_long_lived_conversation(alice):
    session = make_session("long-desk", content={"summary": "s"})
    HandoffEvent.objects.bulk_create([
        HandoffEvent(session_id=session.pk, kind=HandoffEvent.Kind.NOTE, actor="user:old", note=f"old note {i}")
        for i in range(200)])
    client = logged_in(alice)
    response = client.post("/sessions/long-desk/note/", {"note": "the newest note"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "Note added." in html
    assert "the newest note" in html, "the timeline the answer swaps in lacks the new note"
    page = client.get("/sessions/long-desk/").content.decode()
    assert "the newest note" in page and "old note 1<" in page and "old note 0<" not in page
    assert "The newest 200 entries are shown." in page


def test_the_with_a_person_count_says_how_many_not_the_first_100(alice, bob):
    for i in range(101):
        make_session(f"held-{i}")
    SessionContext.objects.filter(session_id__startswith="held-").update(status="human", assignee=bob)
    for page in (logged_in(alice).get("/handoffs/"), logged_in(bob).get("/handoffs/?mine=1")):
        html = page.content.decode()
        heading = html.split('id="taken-title"', 1)[1].split("</h2>", 1)[0]
        assert ">101<" in heading, heading
        assert "The 100 held longest are listed." in html
    assert ">0<" in logged_in(alice).get("/handoffs/?mine=1").content.decode().split('id="taken-title"', 1)[1][:200]


def test_the_hand_back_note_box_takes_no_more_than_fits_after_who_and_when(alice, waiting, settings):
    settings.SESSIONCTX_MAX_GOAL_CHARS = 1000  # the handoff note's bound
    services.handoff_claim(session=waiting, actor=Actor.for_user(alice))
    client = logged_in(alice)
    page = client.get("/sessions/desk-1/").content.decode()
    room = int(re.search(r'maxlength="(\d+)"[^>]*data-field="release-note"', page).group(1))
    prefix = f"Handled by alice ({timezone.now():%Y-%m-%d %H:%M} UTC): "
    assert room == 1000 - len(prefix)  # not the 1000 a browser would let through and the service then refuse

    too_long = client.post("/sessions/desk-1/release/", {"note": "x" * (room + 1)})
    assert too_long.status_code == 400 and f"at most {room} fit" in too_long.content.decode()
    assert client.post("/sessions/desk-1/release/", {"note": "y" * room}).status_code == 302
    waiting.refresh_from_db()
    assert waiting.status == "active" and len(waiting.handoff_note) == 1000
    assert waiting.handoff_note.startswith("Handled by alice (") and waiting.handoff_note.endswith(": " + "y" * room)
