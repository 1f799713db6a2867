"""Every read that the API, the staff pages, the admin and the tasks share."""

from .conversation import (
    handoff_events_for,
    handoff_latest_event_id,
    messages_for,
    recent_messages,
    run_get,
    runs_for,
    unseen_messages,
)
from .events import event_latest_id, events_after, events_for
from .history import (
    FieldDiff,
    PlanProgress,
    RevisionWithDiff,
    newer_revision,
    plan_progress,
    reset_revision,
    revision_history,
    revisions_for,
    snapshot_diff,
)
from .projects import project_by_slug, project_for_staff, project_role, projects_for_user
from .sessions import (
    NEEDS_HUMAN_STATUSES,
    SEARCH_MIN_CHARS,
    SESSION_SORTS,
    SessionPage,
    context_get,
    context_version,
    cursor_is_valid,
    handoff_desk_state,
    handoff_queue,
    handoff_waiting_count,
    search_matches_ids_only,
    search_terms,
    session_get,
    session_list,
    session_page,
    session_search,
    sessions_with_people,
)

__all__ = [
    "NEEDS_HUMAN_STATUSES", "SEARCH_MIN_CHARS", "SESSION_SORTS", "FieldDiff", "PlanProgress", "RevisionWithDiff",
    "SessionPage", "context_get", "context_version", "cursor_is_valid",
    "event_latest_id", "events_after", "events_for", "handoff_desk_state", "handoff_events_for",
    "handoff_latest_event_id", "handoff_queue",
    "handoff_waiting_count", "messages_for", "newer_revision", "plan_progress", "project_by_slug",
    "project_for_staff", "project_role", "projects_for_user", "reset_revision", "recent_messages",
    "revision_history",
    "revisions_for", "run_get", "runs_for", "search_matches_ids_only", "search_terms", "session_get",
    "session_list", "session_page", "session_search", "sessions_with_people", "snapshot_diff", "unseen_messages",
]
