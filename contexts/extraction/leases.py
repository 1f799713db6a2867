"""How a claim tells a live attempt on a session from a dead one: the lease, and on PostgreSQL an advisory lock
that a live attempt holds on its connection (see claim.py)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection

# First key of this app's advisory locks (two-int form), so they cannot meet another application's.
LOCK_SPACE = 0x73637478


def extraction_lease() -> timedelta:
    """How long an attempt can live: the hard time limit kills it, so one started longer ago is dead."""
    limit = settings.CELERY_TASK_TIME_LIMIT
    return timedelta(seconds=limit + max(2, limit // 10))


def lock_key(session_pk: int) -> tuple[int, int]:
    """The advisory lock a live attempt on the session holds (PostgreSQL).

    Past 2**31 sessions two share a key: a shared key can only make a dead attempt look alive (the lease then
    decides, as without the lock), never a live one look dead.
    """
    return LOCK_SPACE, session_pk % 2**31


def use_liveness_locks() -> bool:
    # Off for a connection pooler in transaction mode: a session-level lock would stay on a pooled connection.
    return connection.vendor == "postgresql" and settings.SESSIONCTX_EXTRACTION_LIVENESS_LOCKS


def sessions_with_live_attempts() -> set[int]:
    """Second keys of the attempt locks held now, by any connection to this database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                       "AND classid = %s AND database = (SELECT oid FROM pg_database "
                       "WHERE datname = current_database())", [LOCK_SPACE])
        return {int(objid) for (objid,) in cursor.fetchall()}
