"""Put back the role groups that a transactional test's flush removed (they come from a data migration)."""

from __future__ import annotations

import importlib

from django.contrib.auth.models import Group, Permission


def ensure_roles() -> None:
    roles = importlib.import_module("contexts.migrations.0002_roles")
    for name, codenames in (("support", roles.SUPPORT), ("editor", roles.EDITOR)):
        group, created = Group.objects.get_or_create(name=name)
        if created:
            group.permissions.set(Permission.objects.filter(content_type__app_label="contexts", codename__in=codenames))
