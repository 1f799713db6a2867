"""Projects on the staff pages and in the admin (#16): a person working in project A sees nothing of project B on
any page (list, search, queue, badge, detail, live polls, actions), nor in any admin changelist; the switcher."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from contexts import services
from contexts.models import (
    ApiKey,
    DataDeletion,
    Event,
    ExtractionRun,
    HandoffEvent,
    Message,
    Project,
    Revision,
    SessionContext,
    WebhookDelivery,
    WebhookEndpoint,
)
from contexts.services import Actor
from contexts.services.governance import user_erase
from contexts.services.webhooks import webhook_endpoint_create
from tests.factories import make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db

# Everything of project B carries this word; nothing shown to a member of A alone may.
B_MARK = "zeta"
# What B's rows would show (the slug itself is echoed back by a search for it, so the check is on these).
B_STRINGS = ("zeta-only", "zeta summary", "zeta secret", "zeta message", "zeta needs help", "u-zeta", "zeta-key",
             "zeta-hook", "zeta refused", "zeta-eraser", "zeta-model", "zeta team", 'field-project_label">zeta<')


def _leaks(html: str) -> list[str]:
    html = html.lower()
    return [s for s in B_STRINGS if s in html]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _edit(version: int, summary: str) -> dict:
    return {"version": str(version), "summary": summary, "goal": "", "other_progress": "", "reason": "r"}


@pytest.fixture
def projects():
    alpha, _ = services.project_get_or_create(slug="alpha", name="Alpha team")
    zeta, _ = services.project_get_or_create(slug=B_MARK, name="Zeta team")
    return alpha, zeta


@pytest.fixture
def world(projects, settings):
    """Both projects have `chat-42` (each its own content) and a session waiting for a person; B has more."""
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    alpha, zeta = projects
    a42 = make_session("chat-42", project=alpha, user_id="u-alpha", content={"summary": "Alpha summary"})
    b42 = make_session("chat-42", project=zeta, user_id="u-zeta", content={"summary": "Zeta summary"})
    zonly = make_session("zeta-only", project=zeta, user_id="u-zeta", content={"summary": "Zeta secret plan"})
    services.handoff_request(session=a42, reason="alpha needs help", actor=Actor.system("agent"))
    services.handoff_request(session=zonly, reason="zeta needs help", actor=Actor.system("agent"))
    for session, text in ((a42, "alpha message"), (b42, "zeta message")):
        services.messages_append(session=session, messages=[{"role": "user", "content": text}])
        ExtractionRun.objects.create(session=session, status="succeeded", model=f"{text.split()[0]}-model",
                                     prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.001"),
                                     finished_at=timezone.now())
    for project in projects:
        services.api_key_create(name=f"{project.slug}-key", scopes=["read"], project=project)
        endpoint = webhook_endpoint_create(url=f"http://127.0.0.1:9/{project.slug}-hook", project=project)
        event = Event.objects.filter(project=project).first()
        WebhookDelivery.objects.create(endpoint=endpoint, event=event, last_error=f"{project.slug} refused")
        user_erase(user_id=f"gone-{project.slug}", project=project, actor=Actor.system(f"{project.slug}-eraser"))
    return {name: SessionContext.objects.get(pk=s.pk) for name, s in (("a42", a42), ("b42", b42), ("zonly", zonly))}


@pytest.fixture
def amy(projects):
    """An editor who is a member of project A only."""
    return make_user("amy", role="editor", project=projects[0])


# --- staff pages -------------------------------------------------------------------------------------------


def test_in_project_a_the_list_search_queue_and_badge_show_nothing_of_b(world, amy):
    client = _client(amy)
    for url in ("/", "/?q=zeta", "/?q=secret", "/?q=only", "/?q=chat", "/?needs_human=1", "/?status=active",
                "/?sort=session_id", "/handoffs/", "/handoffs/?mine=1"):
        html = client.get(url).content.decode()
        assert _leaks(html) == [], url
    listing = client.get("/").content.decode()
    assert "chat-42" in listing and "Alpha team" in listing
    queue = client.get("/handoffs/").content.decode()
    assert "alpha needs help" in queue
    assert 'data-waiting="1"' in queue  # not 2: B's waiting session is not counted
    badge = client.get("/handoffs/badge/?since=0", **HTMX).content.decode()
    assert 'data-waiting="1"' in badge


def test_a_session_of_b_is_not_found_in_a_detail_live_poll_and_every_action_and_nothing_changes(world, amy):
    client = _client(amy)
    zonly = world["zonly"]
    before = (zonly.version, zonly.status, zonly.summary, zonly.last_message_seq)
    handoff_events = HandoffEvent.objects.filter(session=zonly).count()
    assert client.get("/sessions/zeta-only/").status_code == 404
    assert client.get("/sessions/zeta-only/live/?since=x", **HTMX).status_code == 404
    posts = {
        "take": {"from": "queue"}, "take-over": {"owner": "1"}, "reply": {"content": "hello from alpha"},
        "note": {"note": "n"}, "release": {"note": "n"}, "close": {"note": "n"},
        "edit": _edit(zonly.version, "overwritten by alpha"),
        "revert": {"to_version": "1", "expected_version": str(zonly.version), "reason": "r"},
        "reset": {"reason": "r", "confirm": "on", "expected_version": str(zonly.version)},
        "locks": {"fields": ["summary"], "reason": "r"},
        "proposals/accept": {"field": "summary", "expected_version": str(zonly.version)},
        "proposals/dismiss": {"field": "summary"},
    }
    for action, data in posts.items():
        for headers in ({}, HTMX):
            response = client.post(f"/sessions/zeta-only/{action}/", data, **headers)
            assert response.status_code == 404, (action, headers, response.status_code)
    zonly.refresh_from_db()
    assert (zonly.version, zonly.status, zonly.summary, zonly.last_message_seq) == before
    assert HandoffEvent.objects.filter(session=zonly).count() == handoff_events
    assert not Message.objects.filter(session=zonly, content="hello from alpha").exists()


def test_the_same_session_id_in_two_projects_shows_and_changes_each_its_own(world, projects):
    alpha, zeta = projects
    both = make_user("bo", role="editor", project=alpha)
    services.membership_set(project=zeta, user=both, role="editor")
    client = _client(both)
    page = client.get("/sessions/chat-42/").content.decode()
    assert "Alpha summary" in page and "Zeta summary" not in page and "alpha message" in page
    assert client.post("/sessions/chat-42/edit/", _edit(world["a42"].version, "Alpha edited")).status_code == 302
    client.post("/projects/switch/", {"project": B_MARK})
    page = client.get("/sessions/chat-42/").content.decode()
    assert "Zeta summary" in page and "Alpha summary" not in page and "zeta message" in page
    world["a42"].refresh_from_db()
    world["b42"].refresh_from_db()
    assert world["a42"].summary == "Alpha edited" and world["b42"].summary == "Zeta summary"


def test_a_page_of_a_keeps_working_in_a_after_another_tab_switched_to_b(world, projects):
    """Its polls and actions carry the project the page was rendered in (an htmx header the body sets): without
    that, the A page of chat-42 would be refreshed with, and would edit, B's chat-42."""
    alpha, zeta = projects
    both = make_user("bo", role="editor", project=alpha)
    services.membership_set(project=zeta, user=both, role="editor")
    client = _client(both)
    page = client.get("/sessions/chat-42/").content.decode()
    assert '"X-Sessionctx-Project": "alpha"' in page
    client.post("/projects/switch/", {"project": B_MARK})  # the other tab
    pinned = {**HTMX, "HTTP_X_SESSIONCTX_PROJECT": "alpha"}
    live = client.get("/sessions/chat-42/live/?since=stale", **pinned).content.decode()
    assert "Zeta" not in live
    response = client.post("/sessions/chat-42/edit/", _edit(world["a42"].version, "Alpha from its tab"), **pinned)
    assert response.status_code == 200
    world["a42"].refresh_from_db()
    world["b42"].refresh_from_db()
    assert world["a42"].summary == "Alpha from its tab" and world["b42"].summary == "Zeta summary"
    # The pin does not move the person: a page loaded now is B's; a project they are not in is refused.
    assert "Zeta summary" in client.get("/sessions/chat-42/").content.decode()
    assert client.get("/sessions/chat-42/live/", **{**HTMX, "HTTP_X_SESSIONCTX_PROJECT": "nope"}).status_code == 403


def test_a_form_of_a_posted_without_javascript_after_another_tab_switched_to_b_acts_in_a(world, projects):
    """A plain form post carries the page's project as a field, as htmx requests carry it as a header."""
    alpha, zeta = projects
    both = make_user("plain", role="editor", project=alpha)
    services.membership_set(project=zeta, user=both, role="editor")
    client = _client(both)
    page = client.get("/sessions/chat-42/").content.decode()
    assert page.count('name="page_project" value="alpha"') >= 5  # every action form of the page
    client.post("/projects/switch/", {"project": B_MARK})  # the other tab
    response = client.post("/sessions/chat-42/edit/",
                           {**_edit(world["a42"].version, "Alpha without JavaScript"), "page_project": "alpha"})
    assert response.status_code == 302
    world["a42"].refresh_from_db()
    world["b42"].refresh_from_db()
    assert world["a42"].summary == "Alpha without JavaScript" and world["b42"].summary == "Zeta summary"
    # Done, the browser goes back to A's chat-42 (not B's, which the remembered project would name).
    assert response["Location"] == "/sessions/chat-42/?project=alpha"
    landed = client.get(response["Location"]).content.decode()
    assert "Alpha without JavaScript" in landed and "Zeta summary" not in landed
    refused = client.post("/sessions/chat-42/edit/", {**_edit(world["b42"].version, "x"), "page_project": "nope"})
    assert refused.status_code == 403
    world["b42"].refresh_from_db()
    assert world["b42"].summary == "Zeta summary"


def test_take_from_a_queue_lands_on_that_session_after_another_tab_switched_to_b(world, projects):
    alpha, zeta = projects
    both = make_user("queue-bo", role="support", project=alpha)
    services.membership_set(project=zeta, user=both, role="support")
    client = _client(both)
    assert "chat-42" in client.get("/handoffs/").content.decode()
    client.post("/projects/switch/", {"project": B_MARK})  # the other tab
    response = client.post("/sessions/chat-42/take/", {"from": "queue", "page_project": "alpha"}, follow=True)
    html = response.content.decode()
    assert response.status_code == 200 and "Alpha summary" in html and "Zeta summary" not in html
    world["a42"].refresh_from_db()
    world["b42"].refresh_from_db()
    assert (world["a42"].status, world["b42"].status) == ("human", "active")


def test_the_switcher_moves_a_member_of_two_projects_and_a_member_of_one_sees_only_the_name(world, projects, amy):
    alpha, zeta = projects
    both = make_user("bo", role="support", project=alpha)
    services.membership_set(project=zeta, user=both, role="support")
    client = _client(both)
    page = client.get("/").content.decode()
    assert 'id="project-select"' in page and 'value="alpha" selected' in page and f'value="{B_MARK}"' in page
    assert "zeta-only" not in page
    switched = client.post("/projects/switch/", {"project": B_MARK}, follow=True).content.decode()
    assert "Now working in project Zeta team." in switched and "zeta-only" in switched
    assert 'data-waiting="1"' in switched
    refused = client.post("/projects/switch/", {"project": "default"}, follow=True).content.decode()
    assert "You are not a member of project &#x27;default&#x27;." in refused and "zeta-only" in refused

    single = _client(amy).get("/").content.decode()
    assert 'id="project-select"' not in single
    assert '<span class="project-name" title="Project">Alpha team</span>' in single
    # A member of A alone cannot switch to B by a form or a link.
    amy_client = _client(amy)
    amy_client.post("/projects/switch/", {"project": B_MARK})
    linked = amy_client.get(f"/?project={B_MARK}").content.decode()
    assert "zeta-only" not in linked
    # ...and is told so, rather than shown A's sessions as if they were what the link named.
    assert f"You are not a member of project &#x27;{B_MARK}&#x27;: this is Alpha team." in linked


def test_a_superuser_sees_every_project_in_the_switcher(world, admin_user):
    page = _client(admin_user).get("/").content.decode()
    for slug in ("alpha", B_MARK, "default"):
        assert f'value="{slug}"' in page


def test_someone_in_no_project_gets_a_clear_403_page(world):
    outsider = make_user("nora")
    from django.contrib.auth.models import Group

    outsider.groups.add(Group.objects.get(name="support"))  # may do the work, but nowhere yet
    response = _client(outsider).get("/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "You are not a member of any project yet: ask an admin to add you to one." in html
    assert 'id="project-select"' not in html


def test_a_support_member_of_b_who_edits_in_a_cannot_edit_in_b(world, projects):
    alpha, zeta = projects
    sue = make_user("sue", role="editor", project=alpha)
    services.membership_set(project=zeta, user=sue, role="support")
    client = _client(sue)
    client.post("/projects/switch/", {"project": B_MARK})
    page = client.get("/sessions/chat-42/").content.decode()
    assert "Zeta summary" in page and "Edit context" not in page
    b42 = world["b42"]
    response = client.post("/sessions/chat-42/edit/", _edit(b42.version, "support overwrote"))
    assert response.status_code == 403 and "edit or reset contexts in project zeta" in response.content.decode()
    b42.refresh_from_db()
    assert b42.summary == "Zeta summary"
    client.post("/projects/switch/", {"project": "alpha"})
    assert "Edit context" in client.get("/sessions/chat-42/").content.decode()
    assert client.post("/sessions/chat-42/edit/", _edit(world["a42"].version, "editor in A")).status_code == 302


# --- admin changelists -------------------------------------------------------------------------------------


@pytest.fixture
def admin_amy(amy):
    """Amy with the admin: staff, every permission of the app, still a member of project A only."""
    amy.is_staff = True
    amy.save(update_fields=["is_staff"])
    amy.user_permissions.add(*Permission.objects.filter(content_type__app_label="contexts"))
    return get_user_model().objects.get(pk=amy.pk)


def _changelists() -> list[tuple[type, str]]:
    found = []
    for model in apps.get_app_config("contexts").get_models():
        try:
            found.append((model, reverse(f"admin:contexts_{model._meta.model_name}_changelist")))
        except NoReverseMatch:
            continue  # not in the admin (shown inline on the session page, or not at all)
    return found


def test_the_admin_has_changelists_for_the_data_of_a_project():
    names = {model.__name__ for model, _url in _changelists()}
    assert {"Project", "SessionContext", "Revision", "ExtractionRun", "Message", "HandoffEvent", "Event", "ApiKey",
            "WebhookEndpoint", "WebhookDelivery", "DataDeletion"} <= names


def test_every_admin_changelist_shows_a_member_of_a_only_the_rows_of_a(world, admin_amy):
    client = _client(admin_amy)
    for model, url in _changelists():
        queries = ["", f"?q={B_MARK}", "?q=only", "?q=secret"]
        if model is not Project:
            queries.append(f"?project={B_MARK}")
        for query in queries:
            response = client.get(url + query)
            assert response.status_code == 200, (url, query, response.status_code)
            assert _leaks(response.content.decode()) == [], url + query
        html = client.get(url).content.decode()
        assert "alpha" in html.lower(), f"{url} shows no row of project A"
        assert model.objects.exclude(**{_path(model): None}).count() >= 2, f"{model.__name__}: seed both projects"


def _path(model) -> str:
    return {SessionContext: "project", Revision: "session__project", ExtractionRun: "session__project",
            Message: "session__project", HandoffEvent: "session__project", Event: "project", ApiKey: "project",
            WebhookEndpoint: "project", WebhookDelivery: "endpoint__project", DataDeletion: "project",
            Project: "id"}[model]


def test_every_admin_change_page_of_a_b_object_is_a_404_for_a_member_of_a(world, projects, admin_amy):
    client = _client(admin_amy)
    zeta = projects[1]
    for model, _url in _changelists():
        b_obj = model.objects.filter(**{_path(model): zeta.pk}).first()
        assert b_obj is not None, model.__name__
        a_obj = model.objects.filter(**{_path(model): projects[0].pk}).first()
        change = f"admin:contexts_{model._meta.model_name}_change"
        assert client.get(reverse(change, args=[b_obj.pk])).status_code == 404, model.__name__
        assert client.get(reverse(change, args=[a_obj.pk])).status_code == 200, model.__name__
        history = f"admin:contexts_{model._meta.model_name}_history"
        assert client.get(reverse(history, args=[b_obj.pk])).status_code == 404, model.__name__


def test_a_member_of_a_cannot_act_on_b_rows_through_changelist_actions(world, projects, admin_amy):
    client = _client(admin_amy)
    zeta = projects[1]
    b_key = ApiKey.objects.get(project=zeta)
    client.post("/admin/contexts/apikey/", {"action": "revoke", "_selected_action": [b_key.pk]})
    b_key.refresh_from_db()
    assert b_key.is_active
    zonly = world["zonly"]
    client.post("/admin/contexts/sessioncontext/", {"action": "erase_users", "_selected_action": [zonly.pk],
                                                    "post": "yes"})
    client.post("/admin/contexts/sessioncontext/", {"action": "delete_selected", "_selected_action": [zonly.pk],
                                                    "post": "yes"})
    assert SessionContext.objects.filter(pk=zonly.pk).exists()
    assert not DataDeletion.objects.filter(project=zeta, actor__startswith="user:").exists()


@pytest.mark.parametrize("url", ["/?project=a%00b", "/handoffs/?project=a%00b"])
def test_a_project_named_with_a_nul_character_in_a_link_is_a_400_not_a_500(url):
    support = make_user("nul-sam", role="support")
    assert _client(support).get(url).status_code == 400  # as any page address with a NUL in its query
    assert _client(support).get(url.replace("a%00b", "ab")).status_code == 200  # an unknown name: their own project


def test_a_page_project_or_a_switch_naming_a_nul_character_is_refused_not_a_500():
    support = make_user("nul-sue", role="support")
    make_session("nul-1", content={"summary": "s"})
    client = _client(support)
    assert client.post("/sessions/nul-1/note/", {"note": "n", "page_project": "a\x00b"}).status_code in (403, 404)
    response = client.post("/projects/switch/", {"project": "a\x00b"}, follow=True)
    assert response.status_code == 200 and "You are not a member of project" in response.content.decode()
    assert not HandoffEvent.objects.exists()


def test_a_session_link_on_a_list_of_a_opens_that_session_after_another_tab_switched_to_b(world, projects):
    """The list and the queue stay in A after a switch in another tab (their polls carry A): so must the sessions
    they link to, or A's chat-42 in the list opens B's chat-42 (a 404 for a session only A has)."""
    alpha, zeta = projects
    both = make_user("links-bo", role="editor", project=alpha)
    services.membership_set(project=zeta, user=both, role="editor")
    client = _client(both)
    pages = {"list": client.get("/").content.decode(), "queue": client.get("/handoffs/").content.decode()}
    client.post("/projects/switch/", {"project": B_MARK})  # the other tab
    pinned = {**HTMX, "HTTP_X_SESSIONCTX_PROJECT": "alpha"}
    pages["polled list"] = client.get("/", **pinned).content.decode()
    for name, html in pages.items():
        links = re.findall(r'href="(/sessions/chat-42/[^"]*)"', html)
        assert links, name
        for link in links:
            landed = client.get(link.replace("&amp;", "&")).content.decode()
            assert "Alpha summary" in landed and "Zeta summary" not in landed, (name, link)
            client.post("/projects/switch/", {"project": B_MARK})  # the other tab again


def test_load_earlier_and_the_breadcrumb_stay_in_the_pages_project_after_another_tab_switched(world, projects):
    """Without JavaScript, 'Load earlier messages' and 'Sessions' are plain links: they must not land in B."""
    alpha, zeta = projects
    for start in (0, 125):
        services.messages_append(session=world["a42"], messages=[
            {"role": "user", "content": f"alpha line {i}"} for i in range(start, start + 125)])
    both = make_user("crumbs-bo", role="editor", project=alpha)
    services.membership_set(project=zeta, user=both, role="editor")
    client = _client(both)
    page = client.get("/sessions/chat-42/?project=alpha").content.decode()
    client.post("/projects/switch/", {"project": B_MARK})  # the other tab
    earlier = re.search(r'<a class="button small" href="([^"]*before=[^"]*)"', page).group(1)
    landed = client.get(earlier.replace("&amp;", "&").split("#")[0]).content.decode()
    assert "Alpha summary" in landed and "alpha line 0" in landed and "Zeta summary" not in landed
    crumb = re.search(r'<nav class="crumbs"[^>]*><a href="([^"]*)"', page).group(1)
    listed = client.get(crumb.replace("&amp;", "&")).content.decode()
    assert "u-alpha" in listed and "u-zeta" not in listed
