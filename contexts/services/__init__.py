"""Every write: the API, the staff pages, the admin, the commands and the tasks call these functions.

Services take what they need (a session row, which they lock and read afresh themselves) and return the new
state; they never change the caller's objects. Snapshot changes all end in `snapshots.snapshot_write`.
"""

from .actors import Actor
from .api_keys import api_key_authenticate, api_key_create, api_key_hash, api_key_revoke, api_key_touch
from .events import event_record, events_purge
from .handoff import (
    handoff_add_note,
    handoff_claim,
    handoff_note_room,
    handoff_release,
    handoff_reply,
    handoff_request,
    handoff_take_over,
    handoffs_of_deleted_user,
    session_close,
)
from .messages import AppendResult, PostResult, messages_append, messages_post
from .projects import membership_set, project_get_or_create
from .sessions import session_delete, session_get_or_create, session_update_policy_set
from .snapshots import (
    snapshot_replace,
    snapshot_reset,
    snapshot_revert,
    snapshot_rewind,
    snapshot_update,
    snapshot_write,
)

__all__ = [
    "Actor", "AppendResult", "PostResult", "api_key_authenticate", "api_key_create", "api_key_hash",
    "api_key_revoke", "api_key_touch", "event_record", "events_purge", "handoff_add_note", "handoff_claim",
    "handoff_note_room", "handoff_release", "handoff_reply", "handoff_request", "handoff_take_over",
    "handoffs_of_deleted_user",
    "membership_set", "messages_append", "messages_post", "project_get_or_create", "session_close",
    "session_delete", "session_get_or_create",
    "session_update_policy_set",
    "snapshot_replace", "snapshot_reset", "snapshot_revert", "snapshot_rewind", "snapshot_update",
    "snapshot_write",
]
