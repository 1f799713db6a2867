"""Who may open which staff route: built from the URLconf, so a new route without an entry here fails."""

from __future__ import annotations

import pytest
from django.urls import reverse

from contexts import services
from contexts.models import HandoffEvent, Project, Revision
from contexts.web import urls as staff_urls
from tests.factories import make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db

# route name -> (method, permission it needs beyond viewing: None, "handoff" or "edit")
ROUTES = {
    "sessions": ("get", None),
    "project_switch": ("post", None),
    "handoffs": ("get", None),
    "handoff_badge": ("get", None),
    "session_live": ("get", None),
    "session_detail": ("get", None),
    "session_edit": ("post", "edit"),
    "session_revert": ("post", "edit"),
    "session_reset": ("post", "edit"),
    "handoff_take": ("post", "handoff"),
    "handoff_take_over": ("post", "edit"),
    "handoff_reply": ("post", "handoff"),
    "handoff_note": ("post", "handoff"),
    "handoff_release": ("post", "handoff"),
    "session_close": ("post", "handoff"),
    "session_locks": ("post", "edit"),
    "proposal_accept": ("post", "edit"),
    "proposal_dismiss": ("post", "edit"),
}
EDIT_ROUTES = [name for name, (_, perm) in ROUTES.items() if perm == "edit"]


def _url(name: str, session_id: str) -> str:
    pattern = next(p for p in staff_urls.urlpatterns if p.name == name)
    return reverse(name, args=[session_id]) if "session_id" in str(pattern.pattern) else reverse(name)


def test_every_staff_route_is_in_the_access_table():
    assert {p.name for p in staff_urls.urlpatterns} == set(ROUTES)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_anonymous_visitors_are_sent_to_the_login_page(client, name):
    session = make_session("acc-1", content={"summary": "before"})
    method, _ = ROUTES[name]
    url = _url(name, session.session_id)
    response = getattr(client, method)(url, {"note": "x", "reason": "x", "summary": "x", "version": "1",
                                             "content": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")
    session.refresh_from_db()
    assert session.version == 1 and session.summary == "before"


def test_anonymous_htmx_requests_redirect_the_whole_page_to_login(client):
    response = client.get("/", HTTP_HX_CURRENT_URL="http://testserver/?q=abc", **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2F%3Fq%3Dabc"


def test_a_logged_in_user_without_a_role_is_refused(client):
    client.force_login(make_user("nobody"))
    make_session("acc-2")
    for url in ("/", "/handoffs/", "/sessions/acc-2/"):
        response = client.get(url)
        assert response.status_code == 403
        assert "You do not have permission to view session contexts." in response.content.decode()


@pytest.mark.parametrize("name", EDIT_ROUTES)
def test_support_cannot_edit_revert_or_reset_and_nothing_changes(support, name):
    session = make_session("acc-3", content={"summary": "original", "plan": ["a"]})
    revisions = Revision.objects.count()
    data = {"version": "1", "expected_version": "1", "to_version": "1", "summary": "hacked", "reason": "because",
            "confirm": "on", "step_id": ["r1"], "step_text": ["hacked step"]}
    response = support.post(_url(name, session.session_id), data)
    assert response.status_code == 403
    session.refresh_from_db()
    assert (session.version, session.summary, session.plan) == (1, "original", ["a"])
    assert Revision.objects.count() == revisions


def test_support_does_not_get_the_edit_form_or_the_editor_controls(support):
    make_session("acc-4", content={"summary": "s"})
    assert support.get("/sessions/acc-4/edit/").status_code == 403
    page = support.get("/sessions/acc-4/").content.decode()
    assert "Edit context" not in page and "Reset context" not in page and "Restore this version" not in page
    assert 'data-action="take"' in page and 'data-action="note"' in page


def test_support_htmx_refusal_is_shown_in_the_flash_region(support):
    make_session("acc-5", content={"summary": "s"})
    response = support.post("/sessions/acc-5/reset/", {"reason": "r", "confirm": "on", "expected_version": "1"},
                            **HTMX)
    assert response.status_code == 403
    assert response["HX-Retarget"] == "#flash" and response["HX-Reswap"] == "innerHTML"
    assert "You do not have permission to edit or reset contexts." in response.content.decode()


def test_a_user_without_the_handoff_permission_cannot_take(client):
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_sessioncontext"))
    services.membership_set(project=Project.default(), user=viewer, role="support")
    client.force_login(viewer)
    session = make_session("acc-6")
    assert client.get("/sessions/acc-6/").status_code == 200
    assert client.post("/sessions/acc-6/take/").status_code == 403
    assert client.post("/sessions/acc-6/reply/", {"content": "Hello"}).status_code == 403
    session.refresh_from_db()
    assert session.status == "active" and not HandoffEvent.objects.filter(session=session).exists()
    assert session.last_message_seq == 0


@pytest.mark.parametrize("who", ["editor", "superuser"])
def test_editors_and_admins_can_edit(request, who):
    client = request.getfixturevalue(who)
    session = make_session("acc-7", content={"summary": "old"})
    response = client.post("/sessions/acc-7/edit/", {"version": "1", "summary": "new", "goal": ""})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.summary == "new" and session.version == 2


def test_login_page_logs_a_person_in_and_goes_back_to_the_page(client):
    make_user("sally", role="support")
    page = client.get("/accounts/login/?next=/handoffs/")
    assert page.status_code == 200 and "Log in" in page.content.decode()
    response = client.post("/accounts/login/", {"username": "sally", "password": "pw-for-tests-1",
                                                "next": "/handoffs/"})
    assert response.status_code == 302 and response["Location"] == "/handoffs/"
    assert client.get("/handoffs/").status_code == 200
    bad = client.post("/accounts/login/", {"username": "sally", "password": "wrong"})
    assert bad.status_code == 200 and "did not match" in bad.content.decode()


def test_logout_is_a_post_and_ends_the_session(support):
    assert support.post("/accounts/logout/").status_code == 302
    assert support.get("/").status_code == 302




def test_htmx_posts_need_the_csrf_header_that_the_body_sets(support_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(support_user)
    make_session("csrf-1")
    page = client.get("/sessions/csrf-1/").content.decode()
    token = page.split('hx-headers=\'{"X-CSRFToken": "', 1)[1].split('"', 1)[0]
    refused = client.post("/sessions/csrf-1/note/", {"note": "hi"}, **HTMX)
    assert refused.status_code == 403 and not HandoffEvent.objects.exists()
    accepted = client.post("/sessions/csrf-1/note/", {"note": "hi"}, HTTP_X_CSRFTOKEN=token, **HTMX)
    assert accepted.status_code == 200 and HandoffEvent.objects.get().note == "hi"


def test_a_page_whose_database_is_unavailable_answers_a_page_for_a_person_not_the_apis_advice(client):
    # The sign-in form with the database down answered the API's text/plain line about If-Match.
    from django.db import OperationalError, connection

    def down(execute, sql, params, many, context):
        raise OperationalError("connection to server at 127.0.0.1 failed")

    with connection.execute_wrapper(down):
        response = client.post("/accounts/login/", {"username": "alice", "password": "pw"})
    page = response.content.decode()
    assert response.status_code == 503 and response["Content-Type"].startswith("text/html")
    assert "cannot reach its database" in page and "If-Match" not in page
    assert response["Retry-After"] == "1"
