"""Data model: projects, session snapshots, their audit revisions, messages, handoff events, runs, API keys.

A module per part of the domain; everything is importable from `contexts.models`. Every write goes through
contexts.services; nothing here changes a snapshot on its own.
"""

from .events import Event, WebhookDelivery, WebhookEndpoint, webhook_secret
from .governance import DataDeletion
from .keys import ApiKey
from .locks import FieldLock, LockChange, Proposal
from .projects import PROJECT_SLUG_PATTERN, Project, ProjectMembership, ProjectRole, project_slug_validator
from .runs import ExtractionRun
from .sessions import (
    SESSION_ID_PATTERN,
    SNAPSHOT_FIELDS,
    UPDATE_POLICY_PATTERN,
    HandoffEvent,
    Message,
    Mode,
    Revision,
    SessionContext,
    Status,
    session_id_validator,
)

__all__ = [
    "PROJECT_SLUG_PATTERN", "SESSION_ID_PATTERN", "SNAPSHOT_FIELDS", "UPDATE_POLICY_PATTERN", "ApiKey", "DataDeletion",
    "Event", "ExtractionRun", "FieldLock", "HandoffEvent", "LockChange", "Message", "Mode", "Project",
    "ProjectMembership", "ProjectRole", "Proposal", "Revision", "SessionContext", "Status", "WebhookDelivery",
    "WebhookEndpoint", "project_slug_validator", "session_id_validator", "webhook_secret",
]
