"""The Django admin: snapshot edits and API keys go through services; revisions stay read-only."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages.storage.cookie import CookieStorage, MessageSerializer
from django.core import signing

from contexts import services
from contexts.models import ApiKey, Event, ExtractionRun, HandoffEvent, Project, Revision, SessionContext
from contexts.services import Actor
from contexts.services.governance import user_erase
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db


class _FormFields(HTMLParser):
    """The fields a browser would submit from the page's main form."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "checkbox", "radio"):
            self.data.setdefault(name, []).append(a.get("value") or "")
        elif tag == "input" and name and "checked" in a:
            self.data.setdefault(name, []).append(a.get("value") or "on")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data.setdefault(name, []).append("")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.data.setdefault(self._select, []).append(a.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        if tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][-1] += data.lstrip("\n") if not self.data[self._textarea][-1] else data


def form_of(html: str) -> dict[str, list[str]]:
    parser = _FormFields()
    parser.feed(html)
    return parser.data


@pytest.fixture
def session():
    s = make_session("adm-1", user_id="carol", content={"summary": "Original summary", "plan": ["a", "b"]})
    services.messages_append(session=s, messages=[{"role": "user", "content": "hello admin"}])
    return s


def test_admin_lists_are_searchable(superuser, session):
    ExtractionRun.objects.create(session=session, status="failed", error="boom")
    services.handoff_request(session=session, reason="help", actor=Actor.system("agent"))
    for model in ("sessioncontext", "revision", "extractionrun", "handoffevent", "apikey"):
        response = superuser.get(f"/admin/contexts/{model}/?q=adm-1")
        assert response.status_code == 200, model
    assert "adm-1" in superuser.get("/admin/contexts/sessioncontext/?q=Original").content.decode()


def test_session_page_shows_revisions_and_links_to_its_paged_transcript(superuser, session):
    html = superuser.get(f"/admin/contexts/sessioncontext/{session.pk}/change/").content.decode()
    assert "Revisions" in html and "hello admin" not in html
    link = re.search(r'href="(/admin/contexts/message/\?session__id__exact=\d+)">1 messages<', html)
    assert link is not None
    services.messages_append(session=session, messages=[{"role": "user", "content": f"m{i}"} for i in range(150)])
    first = superuser.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert "hello admin" in first and "m98" in first and "m99" not in first  # 100 a page, in order
    assert "m149" in superuser.get(link.group(1) + "&p=2").content.decode()


def test_plan_and_progress_are_edited_one_step_per_line(superuser, session):
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    html = superuser.get(url).content.decode()
    data = form_of(html)
    assert data["plan"] == ["a\nb"]  # not '["a", "b"]'
    data["plan"] = ["Book flights\r\n\r\n  Book a hotel  \r\nVisit Sintra"]
    data["progress"] = ["Book flights"]
    response = superuser.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    session.refresh_from_db()
    assert session.plan == ["Book flights", "Book a hotel", "Visit Sintra"] and session.progress == ["Book flights"]


def test_admin_snapshot_edit_goes_through_services_as_an_admin_revision(superuser, admin_user, session):
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    data["summary"] = ["Fixed by an admin"]
    data["reason"] = ["typo"]
    response = superuser.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    session.refresh_from_db()
    assert session.summary == "Fixed by an admin" and session.version == 2 and session.plan == ["a", "b"]
    revision = Revision.objects.get(session=session, version=2)
    assert revision.source == "admin" and revision.actor_user == admin_user and revision.reason == "typo"
    assert revision.changed_fields == ["summary"]


def test_admin_edit_from_a_stale_page_is_refused(superuser, session):
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "Agent wrote this"},
                             source="api", actor=Actor.system("agent"))
    data["summary"] = ["Admin overwrite"]
    response = superuser.post(url, data)
    assert response.status_code == 200 and "This context changed while you edited it" in response.content.decode()
    session.refresh_from_db()
    assert session.summary == "Agent wrote this" and session.version == 2


def test_admin_rejects_an_invalid_plan(superuser, session):
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    data["plan"] = ["ok\n" + "x" * 501]
    response = superuser.post(url, data)
    assert response.status_code == 200 and "Step 2 is longer than" in response.content.decode()
    session.refresh_from_db()
    assert session.version == 1


def test_revisions_cannot_be_added_changed_or_deleted_in_the_admin(superuser, session):
    revision = Revision.objects.get(session=session)
    assert superuser.get("/admin/contexts/revision/add/").status_code == 403
    html = superuser.get(f"/admin/contexts/revision/{revision.pk}/change/").content.decode()
    assert 'name="_save"' not in html
    assert superuser.post(f"/admin/contexts/revision/{revision.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Revision.objects.filter(pk=revision.pk).exists()
    assert superuser.get("/admin/contexts/handoffevent/add/").status_code == 403
    assert superuser.get("/admin/contexts/extractionrun/add/").status_code == 403


def _cookie_messages(response) -> str:
    """What the messages cookie carries, decoded as anyone holding the cookie can (signed, not encrypted)."""
    morsel = response.cookies.get(CookieStorage.cookie_name)
    if not morsel or not morsel.value:
        return ""
    signer = signing.get_cookie_signer(salt=CookieStorage.key_salt)
    return " ".join(str(m) for m in signer.unsign_object(morsel.value, serializer=MessageSerializer))


def test_a_new_api_key_is_shown_once_on_the_answer_page_and_never_in_a_cookie_the_session_or_a_log(
        superuser, admin_user, caplog):
    caplog.set_level(logging.DEBUG)
    response = superuser.post("/admin/contexts/apikey/add/", {"project": Project.default().pk, "name": "billing agent",
                                                              "scopes": ["read", "write"]})
    key = ApiKey.objects.get(name="billing agent")
    start = f"sck_{key.prefix}_"
    assert start not in _cookie_messages(response)
    assert start not in str(dict(superuser.session.items()))
    assert start not in caplog.text
    assert not any(start in (entry.change_message + entry.object_repr) for entry in LogEntry.objects.all())
    # The answer to the POST is the page that shows it, once, and is never stored by a cache.
    assert response.status_code == 200
    html = response.content.decode()
    raw = re.search(rf"{start}[A-Za-z0-9_-]+", html).group(0)
    assert html.count(raw) == 1
    assert services.api_key_hash(raw) == key.key_hash
    assert "no-store" in response["Cache-Control"]
    assert 'href="/admin/contexts/apikey/"' in html
    assert key.scopes == ["read", "write"] and key.created_by == admin_user
    for url in ("/admin/contexts/apikey/", f"/admin/contexts/apikey/{key.pk}/change/"):
        page = superuser.get(url).content.decode()
        assert key.key_hash not in page and raw not in page


def test_a_refused_api_key_form_creates_nothing_and_shows_no_key(superuser):
    response = superuser.post("/admin/contexts/apikey/add/", {"project": Project.default().pk, "name": "",
                                                              "scopes": ["read"]})
    assert response.status_code == 200 and "sck_" not in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoke_action_deactivates_keys(superuser):
    key, _ = services.api_key_create(name="old agent", scopes=["read"])
    response = superuser.post("/admin/contexts/apikey/", {"action": "revoke", "_selected_action": [key.pk]},
                              follow=True)
    assert "Revoked 1 API key(s)." in response.content.decode()
    key.refresh_from_db()
    assert not key.is_active and key.revoked_at is not None


def test_an_erased_session_leaves_no_trace_of_its_id_in_the_admin_history(superuser):
    session = make_session("ana@example.com:chat-1", user_id="ana", content={"summary": "s", "plan": ["a"]})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    data["summary"] = ["edited in the admin"]
    assert superuser.post(url, data).status_code == 302
    assert LogEntry.objects.filter(object_repr="ana@example.com:chat-1").exists()  # the edit is in the history

    user_erase(user_id="ana", actor=Actor.system("test"))
    assert not LogEntry.objects.filter(object_repr__contains="ana@example.com").exists()

    other = make_session("bob@example.com:chat-2")
    response = superuser.post(f"/admin/contexts/sessioncontext/{other.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not LogEntry.objects.filter(object_repr__contains="bob@example.com").exists()
    superuser.get("/admin/")  # shows (and so spends) the "deleted successfully" message
    assert "bob@example.com" not in superuser.get("/admin/").content.decode()  # "Recent actions"


def test_deleting_a_session_in_the_admin_erases_it_through_the_service(superuser, session):
    HandoffEvent.objects.create(session=session, kind="note", actor="x", note="n")
    response = superuser.post(f"/admin/contexts/sessioncontext/{session.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Revision.objects.filter(session_id=session.pk).exists()


@pytest.mark.parametrize("address", [
    "/admin/contexts/sessioncontext/?status__exact=%00", "/admin/contexts/extractionrun/?status__exact=a%00b",
    "/admin/contexts/webhookdelivery/?status__exact=%00", "/admin/contexts/message/?role__exact=%00",
    "/?q=chat%00", "/handoffs/?project=%00"])
def test_a_nul_character_in_a_page_address_is_a_400_not_a_server_error(superuser, session, address):
    # PostgreSQL refuses NUL in a query: passed on to it (the admin's list filters), it was a 500 there.
    response = superuser.get(address)
    assert response.status_code == 400
    assert "Server Error" not in response.content.decode()


def test_a_save_that_leaves_a_multi_line_step_alone_keeps_it_one_step_and_writes_no_revision(superuser):
    session = make_session("adm-lines", content={"plan": ["Migrate:\nschema then data", "Ship"],
                                                 "progress": ["Backed up:\nall tables"]})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    data["update_policy"] = ["every_n_turns:3"]  # not part of the snapshot
    assert superuser.post(url, data).status_code == 302
    session.refresh_from_db()
    assert (session.version, session.update_policy) == (1, "every_n_turns:3")
    data = form_of(superuser.get(url).content.decode())
    data["summary"] = ["Moving the database"]
    assert superuser.post(url, data).status_code == 302
    session.refresh_from_db()
    assert session.plan == ["Migrate:\nschema then data", "Ship"] and session.progress == ["Backed up:\nall tables"]
    assert Revision.objects.get(session=session, version=2).changed_fields == ["summary"]


def test_a_staff_member_who_may_only_view_sessions_reads_the_page(client):
    session = make_session("adm-view", content={"summary": "Refund under way", "plan": ["Check the order"]})
    viewer = make_user("viewer", role="support")
    viewer.is_staff = True
    viewer.save(update_fields=["is_staff"])
    viewer.user_permissions.add(Permission.objects.get(codename="view_sessioncontext"))
    client.force_login(viewer)
    response = client.get(f"/admin/contexts/sessioncontext/{session.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Refund under way" in page and 'name="_save"' not in page


def test_a_conversation_whose_owner_is_deleted_goes_back_to_the_queue_not_to_nobody(superuser):
    session = services.handoff_request(session=make_session("orphan-1"), reason="refund", actor=Actor.system("agent"))
    asked_at = session.handoff_requested_at
    leaving = make_user("temp", role="support")
    services.handoff_claim(session=session, actor=Actor.for_user(leaving))
    other = services.handoff_request(session=make_session("orphan-2"), reason="help", actor=Actor.system("agent"))

    # Deleted in the admin, as an administrator would.
    response = superuser.post(f"/admin/auth/user/{leaving.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302

    session = SessionContext.objects.get(pk=session.pk)
    assert (session.status, session.assignee, session.handoff_requested_at) == ("handoff_requested", None, asked_at)
    revision = Revision.objects.get(session=session, version=session.version)
    assert revision.source == "handoff" and "temp, who had it, no longer has an account" in revision.reason
    assert Event.objects.filter(session=session, type="handoff.requested").count() == 2
    assert Event.objects.filter(session=session).latest("id").data["previous_assignee"] == "temp"
    # Someone else takes it from the queue, where it is first (it was asked for first).
    queue = list(SessionContext.objects.filter(status="handoff_requested").order_by("handoff_requested_at"))
    assert [s.session_id for s in queue] == ["orphan-1", "orphan-2"] and other.status == "handoff_requested"
    taken = services.handoff_claim(session=session, actor=Actor.for_user(make_user("next", role="support")))
    assert taken.assignee.username == "next"
