"""Django admin: every snapshot and key change goes through contexts.services; revisions are read-only.

A module per part of the domain; Django imports this package (admin autodiscovery), which imports each module so
that its models are registered.
"""

from . import events, governance, keys, projects, runs, sessions
from .base import ProjectScopedAdmin, ReadOnlyAdminMixin

__all__ = ["ProjectScopedAdmin", "ReadOnlyAdminMixin", "events", "governance", "keys", "projects", "runs", "sessions"]
