"""Erasing end users from the admin: a confirmation page first, then every session of theirs goes."""

from __future__ import annotations

import pytest

from contexts import services
from contexts.models import DataDeletion, SessionContext
from tests.factories import make_session

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/contexts/sessioncontext/"


def _sessions():
    services.messages_post(session_id="adm-er-1", user_id="u-adm", messages=[{"role": "user", "content": "hi"}])
    make_session("adm-er-2", user_id="u-adm")  # not selected: goes too, as the page says
    make_session("adm-keep", user_id="u-keep")
    return SessionContext.objects.get(session_id="adm-er-1")


def test_the_action_asks_first_then_erases_every_session_of_the_user(superuser):
    selected = _sessions()
    form = {"action": "erase_users", "_selected_action": [selected.pk]}

    page = superuser.post(CHANGELIST, form)

    assert page.status_code == 200
    html = page.content.decode()
    assert "<strong>u-adm</strong> in project default: 2 sessions" in html and "Yes, erase them" in html
    assert SessionContext.objects.count() == 3 and not DataDeletion.objects.exists()

    done = superuser.post(CHANGELIST, {**form, "post": "yes"}, follow=True)

    assert "Erased user u-adm in project default: 2 sessions, 1 messages" in done.content.decode()
    assert list(SessionContext.objects.values_list("session_id", flat=True)) == ["adm-keep"]
    record = DataDeletion.objects.get()
    assert record.kind == "erasure" and record.actor.startswith("user:") and record.counts["sessions"] == 2
    assert superuser.get("/admin/contexts/datadeletion/").status_code == 200


def test_an_editor_who_may_not_use_the_admin_cannot_erase(editor):
    selected = _sessions()
    response = editor.post(CHANGELIST, {"action": "erase_users", "_selected_action": [selected.pk], "post": "yes"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert SessionContext.objects.count() == 3 and not DataDeletion.objects.exists()
