"""Projects in the admin (#16): the project page with its members and counts; keys and webhook endpoints are created
in a project the person edits; erasing an end user works in the selected sessions' project."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from contexts import services
from contexts.models import ApiKey, DataDeletion, Project, ProjectMembership, SessionContext, WebhookEndpoint
from contexts.services.governance import user_id_digest
from contexts.services.webhooks import webhook_endpoint_create
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def projects():
    return services.project_get_or_create(slug="alpha")[0], services.project_get_or_create(slug="zeta")[0]


def _staff(projects, *, roles: dict[str, str]) -> Client:
    """A staff member with every permission of the app, in the given projects with the given roles."""
    user = make_user("pat")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["contexts", "auth"]))
    for project in projects:
        if project.slug in roles:
            services.membership_set(project=project, user=user, role=roles[project.slug])
    client = Client()
    client.force_login(user)
    return client


def _options(html: str, name: str) -> list[str]:
    select = html.split(f'name="{name}"', 1)[1].split("</select>", 1)[0]
    return [text.strip() for value, text in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select)
            if value]


def test_the_project_list_shows_settings_and_counts_and_the_page_edits_members(superuser, admin_user, projects):
    alpha, _zeta = projects
    make_session("p-1", project=alpha)
    make_session("p-2", project=alpha)
    services.api_key_create(name="k", scopes=["read"], project=alpha)
    html = superuser.get("/admin/contexts/project/").content.decode()
    row = re.search(r'<tr>.*?>alpha</a>.*?</tr>', html, re.S).group(0)
    assert '<td class="field-session_count">2</td>' in row and '<td class="field-key_count">1</td>' in row
    member = make_user("mo")
    url = f"/admin/contexts/project/{alpha.pk}/change/"
    response = superuser.post(url, {
        "name": "Alpha team", "retention_days": "30", "daily_token_budget": "",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "0", "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000", "memberships-0-user": str(member.pk), "memberships-0-role": "editor",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    alpha.refresh_from_db()
    assert alpha.retention_days == 30 and alpha.name == "Alpha team"
    assert ProjectMembership.objects.get(project=alpha, user=member).role == "editor"


def test_a_member_sees_only_their_projects_and_changes_only_where_they_edit(projects):
    alpha, zeta = projects
    client = _staff(projects, roles={"alpha": "support"})
    html = client.get("/admin/contexts/project/").content.decode()
    assert ">alpha<" in html and "zeta" not in html
    assert client.get(f"/admin/contexts/project/{zeta.pk}/change/").status_code == 404
    page = client.get(f"/admin/contexts/project/{alpha.pk}/change/").content.decode()
    assert 'name="_save"' not in page  # a support member reads the settings
    client.post(f"/admin/contexts/project/{alpha.pk}/change/", {"name": "renamed", "memberships-TOTAL_FORMS": "0",
                                                                "memberships-INITIAL_FORMS": "0"})
    alpha.refresh_from_db()
    assert alpha.name == "alpha"


def test_the_key_form_offers_the_projects_the_person_edits_and_takes_an_expiry(projects):
    alpha, zeta = projects
    client = _staff(projects, roles={"alpha": "editor", "zeta": "support"})
    page = client.get("/admin/contexts/apikey/add/").content.decode()
    assert _options(page, "project") == ["alpha"]
    assert re.search(r'<option value="\d+" selected>alpha</option>', page)  # the only choice is chosen

    refused = client.post("/admin/contexts/apikey/add/", {"project": zeta.pk, "name": "sneaky", "scopes": ["read"]})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    past = timezone.localtime() - timedelta(days=1)
    expired = client.post("/admin/contexts/apikey/add/", {
        "project": alpha.pk, "name": "late", "scopes": ["read"],
        "expires_at_0": past.strftime("%Y-%m-%d"), "expires_at_1": past.strftime("%H:%M:%S")})
    assert "The expiry must be in the future." in expired.content.decode()
    assert not ApiKey.objects.exists()

    soon = timezone.localtime() + timedelta(days=7)
    created = client.post("/admin/contexts/apikey/add/", {
        "project": alpha.pk, "name": "billing agent", "scopes": ["read", "write"],
        "expires_at_0": soon.strftime("%Y-%m-%d"), "expires_at_1": soon.strftime("%H:%M:%S")})
    assert created.status_code == 200 and "sck_" in created.content.decode()
    key = ApiKey.objects.get()
    assert key.project == alpha and key.expires_at is not None
    assert abs((key.expires_at - soon).total_seconds()) < 1


def test_the_webhook_form_takes_the_project(projects, settings):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    alpha, zeta = projects
    client = _staff(projects, roles={"alpha": "editor", "zeta": "support"})
    assert _options(client.get("/admin/contexts/webhookendpoint/add/").content.decode(), "project") == ["alpha"]
    client.post("/admin/contexts/webhookendpoint/add/", {"project": zeta.pk, "url": "http://127.0.0.1:9/z",
                                                         "description": ""})
    assert not WebhookEndpoint.objects.exists()
    client.post("/admin/contexts/webhookendpoint/add/", {"project": alpha.pk, "url": "http://127.0.0.1:9/a",
                                                         "description": ""})
    assert WebhookEndpoint.objects.get().project == alpha


def test_erasing_an_end_user_erases_them_in_the_selected_sessions_project_only(superuser, projects):
    alpha, zeta = projects
    selected = make_session("er-a1", project=alpha, user_id="u-shared")
    make_session("er-a2", project=alpha, user_id="u-shared")
    make_session("er-z1", project=zeta, user_id="u-shared")  # another project's user of the same id: stays
    form = {"action": "erase_users", "_selected_action": [selected.pk]}

    page = superuser.post("/admin/contexts/sessioncontext/", form).content.decode()
    assert "<strong>u-shared</strong> in project alpha: 2 sessions" in page

    done = superuser.post("/admin/contexts/sessioncontext/", {**form, "post": "yes"}, follow=True)

    assert "Erased user u-shared in project alpha: 2 sessions" in done.content.decode()
    assert list(SessionContext.objects.values_list("session_id", flat=True)) == ["er-z1"]
    record = DataDeletion.objects.get()
    assert record.project == alpha and record.counts["sessions"] == 2


def test_a_support_member_cannot_erase_and_is_told_why(projects):
    alpha, _zeta = projects
    selected = make_session("er-s", project=alpha, user_id="u-s")
    client = _staff(projects, roles={"alpha": "support"})
    response = client.post("/admin/contexts/sessioncontext/", {"action": "erase_users",
                                                               "_selected_action": [selected.pk], "post": "yes"},
                           follow=True)
    assert "Not erased in project(s) alpha: erasing takes the editor role there." in response.content.decode()
    assert SessionContext.objects.filter(pk=selected.pk).exists() and not DataDeletion.objects.exists()


def test_the_default_project_is_preselected_for_a_superuser(superuser):
    default = Project.default()
    services.project_get_or_create(slug="other")
    page = superuser.get("/admin/contexts/apikey/add/").content.decode()
    assert f'<option value="{default.pk}" selected>default</option>' in page


def test_a_support_member_does_not_see_the_signing_secret_of_their_projects_endpoints(projects, settings):
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    alpha, zeta = projects
    client = _staff(projects, roles={"alpha": "support", "zeta": "editor"})
    a_hook = webhook_endpoint_create(url="http://127.0.0.1:9/a", project=alpha)
    z_hook = webhook_endpoint_create(url="http://127.0.0.1:9/z", project=zeta)
    # Support in alpha: the endpoint's page, without the secret that signs what alpha's receivers trust.
    page = client.get(f"/admin/contexts/webhookendpoint/{a_hook.pk}/change/").content.decode()
    assert "http://127.0.0.1:9/a" in page and a_hook.secret not in page
    # Editor in zeta: the secret, to put in the receiver.
    assert z_hook.secret in client.get(f"/admin/contexts/webhookendpoint/{z_hook.pk}/change/").content.decode()


def test_a_project_filter_naming_no_possible_project_lists_nothing_not_a_500(superuser, projects):
    make_session("nul-1", project=projects[0])
    for path in ("/admin/contexts/sessioncontext/", "/admin/contexts/apikey/"):
        response = superuser.get(path + "?project=a%00b")
        assert response.status_code == 400, path  # a 500 on PostgreSQL, which refuses NUL in a query
        assert "nul-1" not in response.content.decode()
    assert "nul-1" not in superuser.get("/admin/contexts/sessioncontext/?project=zzz").content.decode()
    assert "nul-1" in superuser.get("/admin/contexts/sessioncontext/?project=alpha").content.decode()


def test_a_key_expiring_past_a_century_is_a_form_error_not_a_500(superuser, projects):
    superuser.cookies["tz"] = "America/New_York"  # 9999-12-31 23:00 here is past the calendar in UTC
    response = superuser.post("/admin/contexts/apikey/add/", {
        "project": projects[0].pk, "name": "forever", "scopes": ["read"],
        "expires_at_0": "9999-12-31", "expires_at_1": "23:00:00"})
    assert response.status_code == 200 and "The expiry must be within 100 years" in response.content.decode()
    assert not ApiKey.objects.filter(name="forever").exists()


def test_delete_selected_across_projects_confirms_says_and_logs_only_what_it_deletes(projects):
    from django.contrib.admin.models import DELETION, LogEntry

    alpha, zeta = projects
    mine = make_session("a-1", project=alpha)
    theirs = make_session("z-1", project=zeta)
    client = _staff(projects, roles={"alpha": "editor", "zeta": "support"})
    picked = {"action": "delete_selected", "_selected_action": [mine.pk, theirs.pk]}

    confirm = client.post("/admin/contexts/sessioncontext/", picked).content.decode()
    assert f'name="_selected_action" value="{mine.pk}"' in confirm and "1 selected session(s) left out" in confirm
    assert f'name="_selected_action" value="{theirs.pk}"' not in confirm and "z-1" not in confirm
    done = client.post("/admin/contexts/sessioncontext/", {**picked, "_selected_action": [mine.pk], "post": "yes"},
                       follow=True).content.decode()

    assert "Successfully deleted 1 session context" in done and "Successfully deleted 2" not in done
    assert not SessionContext.objects.filter(pk=mine.pk).exists()
    assert SessionContext.objects.filter(pk=theirs.pk).exists()
    # Recorded as a deletion of hers alone, by digest (the admin's own log of a session goes with it, as its id may
    # name a person).
    assert _erased_digests() == [user_id_digest("a-1")]
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()
    # Both picked again and confirmed as is: still only hers, the other named as left out.
    again = make_session("a-2", project=alpha)
    client.post("/admin/contexts/sessioncontext/", {**picked, "_selected_action": [again.pk, theirs.pk],
                                                    "post": "yes"})
    assert not SessionContext.objects.filter(pk=again.pk).exists()
    assert SessionContext.objects.filter(pk=theirs.pk).exists()
    assert _erased_digests() == sorted([user_id_digest("a-1"), user_id_digest("a-2")])


def _erased_digests() -> list[str]:
    return sorted(record.criteria["session_id_sha256"] for record in DataDeletion.objects.all())


def test_no_admin_list_answers_guesses_at_a_signing_secret_or_a_keys_hash(projects, settings):
    # A support member may view the endpoints and keys of their project, never the secret or the hash; a list that
    # showed a row or not for ?secret__regex=^whsec_a would let them read either a character at a time.
    settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = True
    alpha, _zeta = projects
    hook = webhook_endpoint_create(url="http://127.0.0.1:9/alpha-hook", project=alpha)
    key, _raw = services.api_key_create(name="agent-a", scopes=["read"], project=alpha)
    client = _staff(projects, roles={"alpha": "support"})
    client.raise_request_exception = False
    guesses = (f"/admin/contexts/webhookendpoint/?secret__regex=^{hook.secret[:8]}",
               f"/admin/contexts/webhookendpoint/?secret__startswith={hook.secret[:8]}",
               f"/admin/contexts/webhookdelivery/?endpoint__secret__startswith={hook.secret[:8]}",
               f"/admin/contexts/apikey/?key_hash__regex=^{key.key_hash[:4]}",
               f"/admin/contexts/apikey/?key_hash={key.key_hash}")
    for url in guesses:
        response = client.get(url)
        assert response.status_code == 400, (url, response.status_code)
        assert "alpha-hook" not in response.content.decode() and "agent-a" not in response.content.decode()
    assert "alpha-hook" in client.get("/admin/contexts/webhookendpoint/?is_active__exact=1").content.decode()


def test_a_project_made_by_mistake_is_deleted_with_its_keys_but_not_one_with_sessions_nor_the_default(superuser):
    typo = Project.objects.create(slug="kitchn", name="kitchn")
    key, _ = services.api_key_create(name="agent", scopes=["read"], project=typo)
    services.api_key_revoke(api_key=key)
    url = f"/admin/contexts/project/{typo.pk}/delete/"
    assert "permission to delete" not in superuser.get(url).content.decode()
    assert superuser.post(url, {"post": "yes"}).status_code == 302
    assert not Project.objects.filter(slug="kitchn").exists() and not ApiKey.objects.filter(pk=key.pk).exists()

    used = Project.objects.create(slug="used", name="Used")
    make_session("kept", project=used)
    page = superuser.get(f"/admin/contexts/project/{used.pk}/delete/").content.decode()
    assert "would require deleting the following protected related objects" in page
    superuser.post(f"/admin/contexts/project/{used.pk}/delete/", {"post": "yes"})
    assert SessionContext.objects.filter(session_id="kept", project=used).exists()

    assert superuser.get(f"/admin/contexts/project/{Project.default().pk}/delete/").status_code == 403


def test_a_deleted_projects_live_key_is_revoked_and_delete_selected_keeps_the_default_project(superuser):
    typo = Project.objects.create(slug="typo", name="typo")
    key, raw = services.api_key_create(name="agent", scopes=["read"], project=typo)
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/sessions").status_code == 200
    default = Project.default()
    confirm = superuser.post("/admin/contexts/project/", {"action": "delete_selected",
                                                          "_selected_action": [typo.pk, default.pk]})
    assert "the default project" in confirm.content.decode()
    superuser.post("/admin/contexts/project/", {"action": "delete_selected", "post": "yes",
                                                "_selected_action": [typo.pk, default.pk]})
    assert Project.objects.filter(pk=default.pk).exists()  # the same row, settings and members kept
    superuser.post(f"/admin/contexts/project/{typo.pk}/delete/", {"post": "yes"})
    assert not Project.objects.filter(slug="typo").exists()
    # Refused at once, by every process: its cached entry was replaced by the revocation's tombstone first.
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/sessions").status_code == 401
