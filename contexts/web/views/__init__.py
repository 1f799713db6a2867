"""Staff pages: one view per page or action; htmx requests get the partial they target, plain ones the page.

`lists` (sessions, handoff queue, badge, project switch), `session` (the session page, editing, locks and
proposals), `desk` (the handoff actions), and what they share in `common`. urls.py and settings name the views
from here.
"""

from .common import csrf_failure
from .desk import handoff_note, handoff_release, handoff_reply, handoff_take, handoff_take_over, session_close
from .lists import handoff_badge, handoff_queue, project_switch, session_list
from .session import (
    proposal_accept,
    proposal_dismiss,
    session_detail,
    session_edit,
    session_live,
    session_locks,
    session_reset,
    session_revert,
)

__all__ = [
    "csrf_failure", "handoff_badge", "handoff_note", "handoff_queue", "handoff_release", "handoff_reply",
    "handoff_take", "handoff_take_over", "project_switch", "proposal_accept", "proposal_dismiss", "session_close",
    "session_detail", "session_edit", "session_list", "session_live", "session_locks", "session_reset",
    "session_revert",
]
