"""Shared builders for tests: sessions, users by role, API keys."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from contexts import services
from contexts.models import Project, SessionContext
from contexts.services import Actor

_ids = itertools.count(1)


def make_session(session_id: str | None = None, *, mode: str = "planning", content: dict | None = None,
                 **owners) -> SessionContext:
    session, _ = services.session_get_or_create(session_id=session_id or f"s-{next(_ids)}", mode=mode, **owners)
    if content:
        session = services.snapshot_update(session=session, expected_version=session.version, changes=content,
                                 source="api", actor=Actor.system("test"))
    return session


def make_user(username: str, *, role: str | None = None, superuser: bool = False, password: str = "pw-for-tests-1",
              project: Project | None = None):
    """A staff user with the role's group and the same role in `project` (default: the `default` project)."""
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", password)
    user = User.objects.create_user(username, f"{username}@example.com", password)
    if role:
        user.groups.add(Group.objects.get(name=role))
        services.membership_set(project=project or Project.default(), user=user, role=role)
    return user


def make_api_key(*scopes: str, name: str = "test agent") -> tuple:
    """(ApiKey, raw key) with the given scopes (default read and write)."""
    return services.api_key_create(name=name, scopes=list(scopes or ("read", "write")))
