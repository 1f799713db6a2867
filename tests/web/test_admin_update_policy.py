"""The admin sets a session's update policy (#18.5): stored without a revision; a wrong one is refused."""

from __future__ import annotations

import pytest

from contexts import services
from contexts.models import Revision, SessionContext
from tests.factories import make_session
from tests.web.test_admin import form_of

pytestmark = pytest.mark.django_db


def test_the_admin_sets_the_update_policy_without_a_revision_and_refuses_a_wrong_one(superuser):
    session = make_session("adm-pol", content={"summary": "s"})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    assert data["update_policy"] == [""]
    data["update_policy"] = ["idle:300"]
    response = superuser.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    session = SessionContext.objects.get(pk=session.pk)
    assert session.update_policy == "idle:300" and session.version == 1
    assert Revision.objects.filter(session=session).count() == 1
    data = form_of(superuser.get(url).content.decode())
    data["update_policy"] = ["every_n_turns:0"]
    response = superuser.post(url, data)
    assert response.status_code == 200 and "every_n_turns:N" in response.content.decode()
    assert SessionContext.objects.get(pk=session.pk).update_policy == "idle:300"


def test_a_save_from_a_page_loaded_before_an_agent_set_the_policy_keeps_the_agents_policy(superuser):
    session = make_session("adm-pol-stale", content={"summary": "s"})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())  # the session's own policy: none yet
    # Meanwhile the agent gives the session its own policy (PUT /api/v1/sessions/{id}); that writes no revision,
    # so the page's version is still the current one.
    services.session_get_or_create(session_id=session.session_id, project=session.project_id, update_policy="idle:60")
    data["summary"] = ["s, with a typo fixed"]

    response = superuser.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    session = SessionContext.objects.get(pk=session.pk)
    assert session.summary == "s, with a typo fixed" and session.version == 2
    assert session.update_policy == "idle:60"
