"""The handoff desk end to end: one agent (through the API, with a key) and two people in two browsers.

agent asks for a person -> the queue shows it without reload -> A takes -> B cannot reply or hand back -> A replies
-> the agent's event feed and a webhook receiver (signature verified) get the reply -> the agent posts the customer's
answer -> it appears on A's page without reload, A's half-typed reply kept -> A hands back with a note -> the agent
(feed and webhook) sees handoff.released with the note, and the context has it.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect
from standardwebhooks import Webhook

from contexts.services.webhooks import webhook_endpoint_create
from tests.browser.test_staff_flow import login
from tests.factories import make_api_key, make_user
from tests.roles import ensure_roles
from tests.services.webhook_receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SESSION = "desk-loop-7"
LIVE_WITHIN = 5_000  # ms: the pages poll every 3 s


RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.shownNotifications = [];
  class Recorded extends Real {
    constructor(title, options) { window.shownNotifications.push(title); super(title, options); }
  }
  Object.defineProperty(Recorded, "permission", {get: () => Real.permission});
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
})();
"""


class Agent:
    """The agent's side: plain HTTP calls to the API with its key (Playwright's request client, no browser)."""

    def __init__(self, chromium, base_url: str, key: str):
        self.context = chromium.new_context(base_url=base_url,
                                            extra_http_headers={"Authorization": f"Bearer {key}"})
        self.http = self.context.request

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.fetch("/api/v1" + path, method=method, **kwargs)
        assert response.ok, f"{method} {path}: {response.status} {response.text()}"
        return response.json()

    def events(self, after: int, types: str, wait: float = 10) -> tuple[list[dict], int]:
        """The session's events of `types` after `after` (long-polling up to `wait` s), and the next cursor."""
        page = self.call("GET", "/events", params={"after": after, "session_id": SESSION, "types": types,
                                                   "wait": wait}, timeout=(wait + 5) * 1000)
        return page["events"], page["next_after"]


@pytest.fixture
def agent(chromium, live_server):
    ensure_roles()
    _, key = make_api_key("read", "write", name="support-bot")
    agent = Agent(chromium, live_server.url, key)
    yield agent
    agent.context.close()


@pytest.fixture
def receiver(settings):
    """A local webhook receiver registered as an endpoint for the reply and the hand-back (sent by a thread of the
    live server's process, as in the embedded default)."""
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1
    with Receiver(204) as receiver:
        receiver.secret = webhook_endpoint_create(
            url=receiver.url, event_types=["message.staff_reply", "handoff.released"],
            description="the agent's receiver").secret
        yield receiver


def test_the_desk_loop_with_two_people_and_one_agent(live_server, new_page, agent, receiver, artifacts_dir):
    make_user("alice", role="support")
    make_user("bob", role="support")

    def shot(page, name: str) -> None:
        page.screenshot(path=str(artifacts_dir / f"desk-{name}.png"), full_page=True, caret="initial")

    # The conversation so far, posted by the agent as usual.
    agent.call("POST", f"/sessions/{SESSION}/messages", data={"mode": "summary", "user_id": "carol", "messages": [
        {"role": "user", "content": "I was charged twice for my order.", "idempotency_key": "t1-u"},
        {"role": "assistant", "content": "I am sorry; let me check.", "idempotency_key": "t1-a"},
    ]})
    _, cursor = agent.events(after=0, types="context.updated", wait=0)

    a, b = new_page(), new_page()
    # A's browser lets the site notify and records what it shows (a headless browser has no desktop to show it on).
    a.context.grant_permissions(["notifications"], origin=live_server.url)
    a.context.add_init_script(RECORD_NOTIFICATIONS)
    login(a, live_server.url, "alice")
    login(b, live_server.url, "bob")
    a.goto(live_server.url + "/handoffs/")
    expect(a.locator("#handoff-queue")).to_contain_text("Nobody is waiting")
    expect(a.locator("#waiting-badge")).to_be_hidden()  # never a red 0
    # Desktop alerts are opt-in, per browser.
    a.get_by_role("button", name="Desktop alerts: off").click()
    expect(a.get_by_role("button", name="Desktop alerts: on")).to_be_visible()
    assert a.evaluate("localStorage.getItem('sessionctx.notify')") == "on"
    a.evaluate("window.stillTheSamePage = true")
    shot(a, "01-queue-empty")

    # 1. The agent asks for a person: the queue, the menu badge and the tab title show it without a reload.
    agent.call("POST", f"/sessions/{SESSION}/handoff", data={"reason": "Customer wants the double charge refunded"})
    queue_row = a.locator("#handoff-queue tr", has_text=SESSION)
    expect(queue_row).to_contain_text("Customer wants the double charge refunded", timeout=LIVE_WITHIN)
    expect(a.locator("#waiting-badge")).to_have_text("1")
    expect(a.locator("#waiting-title .count")).to_have_text("1")
    expect(a).to_have_title(re.compile(r"^\(1\) Handoff queue"))
    assert a.evaluate("window.stillTheSamePage") is True
    assert a.evaluate("window.shownNotifications") == ["1 conversation waits for a person"]
    shot(a, "02-queue-shows-request")

    # B has the conversation open before anyone takes it.
    b.goto(live_server.url + f"/sessions/{SESSION}/")
    expect(b.locator("#session-actions [data-action=take]")).to_be_visible()

    # 2. A takes it.
    queue_row.get_by_role("button", name="Take").click()
    expect(a).to_have_url(re.compile(rf"/sessions/{SESSION}/$"))
    expect(a.locator(".session-head .badge")).to_have_text("Human")
    expect(a.locator(".session-head")).to_contain_text("alice (you)")
    reply_box = a.locator("#reply-text")
    expect(reply_box).to_be_visible()
    shot(a, "03-a-took-it")

    # 3. B's page follows without a reload: A owns it, and B has no reply, hand-back or close controls.
    expect(b.locator("[data-field=owner]")).to_contain_text("alice owns this conversation", timeout=LIVE_WITHIN)
    for action in ("take", "reply", "release", "close"):
        expect(b.locator(f"[data-action={action}]")).to_have_count(0)
    # Even posting the forms by hand (a stale tab, a race) is refused, naming the owner.
    token = json.loads(b.locator("body").get_attribute("hx-headers"))["X-CSRFToken"]
    for path, form in (("reply", {"content": "Bob's answer"}), ("release", {"note": "Bob hands back"})):
        refused = b.request.post(live_server.url + f"/sessions/{SESSION}/{path}/", form=form,
                                 headers={"X-CSRFToken": token, "HX-Request": "true"})
        assert refused.status == 409 and "alice owns this conversation" in refused.text()
    shot(b, "04-b-sees-the-owner")

    # 4. A answers the customer; the transcript shows it as A's.
    reply_box.fill("We refunded the second charge.")
    a.get_by_role("button", name="Send reply").click()
    staff_reply = a.locator("#transcript .msg-staff").last
    expect(staff_reply).to_contain_text("alice (staff)")
    expect(staff_reply).to_contain_text("We refunded the second charge.")
    expect(reply_box).to_have_value("")
    shot(a, "05-a-replied")

    # 5. The agent learns of the reply from the event feed and relays it to the customer.
    events, cursor = agent.events(after=cursor, types="message.staff_reply")
    assert [(e["data"]["author"], e["data"]["content"]) for e in events] == [
        ("alice", "We refunded the second charge.")]
    # The receiver registered as a webhook endpoint gets the same event, signed with the endpoint's secret.
    (delivery,) = receiver.wait_for(1)
    hooked = Webhook(receiver.secret).verify(delivery.body, delivery.headers)
    assert hooked == events[0] and delivery.headers["webhook-id"] == str(events[0]["id"])

    # 6. A starts the next answer; meanwhile the customer writes again, through the agent.
    reply_box.fill("Half-typed: the refund shows up in")
    agent.call("POST", f"/sessions/{SESSION}/messages", data={"messages": [
        {"role": "user", "content": "Thanks! How long until I see the money?", "idempotency_key": "t2-u"},
    ]})
    expect(a.locator("#transcript")).to_contain_text("How long until I see the money?", timeout=LIVE_WITHIN)
    # What A was typing, and where the cursor was, survived the update.
    expect(reply_box).to_have_value("Half-typed: the refund shows up in")
    expect(reply_box).to_be_focused()
    shot(a, "06-customer-answer-arrives-while-a-types")

    # 7. A hands back with a note.
    a.locator("[data-field=release-note]").fill("Refund issued; tell Carol it takes 3 to 5 days.")
    a.get_by_role("button", name="Hand back to agent").click()
    expect(a.locator(".session-head .badge")).to_have_text("Active")
    expect(a.locator("[data-field=handoff_note]")).to_contain_text("Refund issued; tell Carol it takes 3 to 5 days.")
    expect(b.locator(".session-head .badge")).to_have_text("Active", timeout=LIVE_WITHIN)
    shot(a, "07-a-handed-back")

    # 8. The agent sees the hand-back with the note, and the context it reads has it.
    events, _ = agent.events(after=cursor, types="handoff.released")
    assert len(events) == 1 and events[0]["data"]["note"] == "Refund issued; tell Carol it takes 3 to 5 days."
    # So does the webhook receiver, after the reply and nothing else (the endpoint asked for these two types).
    deliveries = receiver.wait_for(2)
    hooked = [Webhook(receiver.secret).verify(d.body, d.headers) for d in deliveries]
    assert [h["type"] for h in hooked] == ["message.staff_reply", "handoff.released"]
    assert hooked[1] == events[0]
    context = agent.call("GET", f"/sessions/{SESSION}/context")
    assert context["status"] == "active"
    assert "Refund issued; tell Carol it takes 3 to 5 days." in context["handoff_note"]
    messages = agent.call("GET", f"/sessions/{SESSION}/messages")
    staff = [m for m in messages["results"] if m["author"]]
    assert [(m["role"], m["author"], m["content"]) for m in staff] == [
        ("assistant", "alice", "We refunded the second charge.")]

    # 9. B, signed out elsewhere while typing, keeps the page and the text: the polls stop and say so.
    b.locator("[data-field=note]").fill("Half a note from Bob")
    b.context.clear_cookies(name="sessionid")  # as signing out in another tab does (the CSRF cookie stays)
    expect(b.locator("#flash")).to_contain_text("You are signed out", timeout=LIVE_WITHIN)
    expect(b).to_have_url(re.compile(rf"/sessions/{SESSION}/$"))
    expect(b.locator("[data-field=note]")).to_have_value("Half a note from Bob")
    shot(b, "08-b-signed-out-keeps-the-page")
    # Sending it anyway is refused on the page: not sent, and the note is still there to send after signing in.
    b.locator("[data-action=note]").click()
    expect(b.locator("#flash")).to_contain_text("this was not sent", timeout=LIVE_WITHIN)
    expect(b).to_have_url(re.compile(rf"/sessions/{SESSION}/$"))
    expect(b.locator("[data-field=note]")).to_have_value("Half a note from Bob")
