from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import make_user
from tests.roles import ensure_roles


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def support_user(db):
    return make_user("sam-support", role="support")


@pytest.fixture
def editor_user(db):
    return make_user("eve-editor", role="editor")


@pytest.fixture
def admin_user(db):
    return make_user("ada-admin", superuser=True)


@pytest.fixture
def support(support_user) -> Client:
    return _client_for(support_user)


@pytest.fixture
def editor(editor_user) -> Client:
    return _client_for(editor_user)


@pytest.fixture
def superuser(admin_user) -> Client:
    return _client_for(admin_user)


HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Tests log users in many times; the production hasher is deliberately slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def roles(request):
    # Only tests that use the database; an earlier transactional test may have flushed the groups.
    if "db" in request.fixturenames or "transactional_db" in request.fixturenames:
        ensure_roles()
