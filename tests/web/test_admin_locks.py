"""Locks in the admin (#18.6): set on the session's change page, through services.locks, with the audit row."""

from __future__ import annotations

import pytest

from contexts.models import FieldLock, LockChange, Proposal
from contexts.services.locks import proposals_record
from tests.factories import make_session
from tests.web.test_admin import form_of

pytestmark = pytest.mark.django_db


def test_an_admin_locks_a_field_with_a_reason_and_sees_its_proposal(superuser):
    session = make_session("adm-l1", content={"plan": ["a", "b"]})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    data.update(locked_fields=["plan"], lock_reason=["Agreed with the customer"])

    response = superuser.post(url, data)

    assert response.status_code == 302, response.content.decode()[-2000:]
    change = LockChange.objects.get(session=session)
    assert (change.fields, change.reason, change.actor) == (["plan"], "Agreed with the customer", "user:ada-admin")
    session.refresh_from_db()
    assert session.version == 1  # a lock is no snapshot change
    proposals_record(session, withheld={"plan": ["a", "c"]}, run=None)
    page = superuser.get(url).content.decode()
    assert form_of(page)["locked_fields"] == ["plan"]  # the box stays ticked
    assert "Lock changes" in page and '[&quot;a&quot;, &quot;c&quot;]' in page
    assert Proposal.objects.filter(session=session).count() == 1


def test_locking_in_the_admin_without_a_reason_is_refused(superuser):
    session = make_session("adm-l2", content={"plan": ["a"]})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    data.update(locked_fields=["plan"], lock_reason=[""])
    response = superuser.post(url, data)
    assert response.status_code == 200 and "A reason is required to lock a field." in response.content.decode()
    assert not FieldLock.objects.exists() and not LockChange.objects.exists()


def test_an_admin_save_that_only_locks_a_field_is_not_a_new_version_of_a_multi_line_summary(superuser):
    session = make_session("adm-crlf", content={"summary": "Line one\nLine two", "plan": ["a"]})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())
    data["summary"] = [data["summary"][0].replace("\n", "\r\n")]  # what a browser posts
    data.update(locked_fields=["plan"], lock_reason=["agreed"])
    assert superuser.post(url, data).status_code == 302
    session.refresh_from_db()
    assert session.version == 1 and session.summary == "Line one\nLine two"
    assert FieldLock.objects.filter(session=session, field="plan").exists()


def test_an_admin_page_loaded_before_a_lock_was_set_cannot_silently_remove_it(superuser):
    from contexts.services import Actor
    from contexts.services.locks import locks_set
    from tests.factories import make_user

    session = make_session("adm-stale", content={"summary": "s", "plan": ["a", "b"]})
    url = f"/admin/contexts/sessioncontext/{session.pk}/change/"
    data = form_of(superuser.get(url).content.decode())  # nothing locked when the page loaded
    locks_set(session=session, fields=["plan"], reason="agreed with the customer",
              actor=Actor.for_user(make_user("olga", role="editor")))
    data["goal"] = ["A new goal"]  # an unrelated edit

    response = superuser.post(url, data)

    assert response.status_code == 200 and "changed this context&#x27;s locks" in response.content.decode()
    session.refresh_from_db()
    assert FieldLock.objects.filter(session=session, field="plan").exists() and session.goal == ""
    # Reloaded, the same edit saves and keeps the lock.
    data = form_of(superuser.get(url).content.decode())
    data["goal"] = ["A new goal"]
    assert superuser.post(url, data).status_code == 302
    session.refresh_from_db()
    assert session.goal == "A new goal" and FieldLock.objects.filter(session=session, field="plan").exists()
