"""Bench data written straight with SQL (generate_series), fast enough for a million sessions.

The rows look like what the services write: a planning or summary snapshot at version `revisions`,
and one audit revision per version. Session ids are `bench-<n>`. Every session belongs to a project: the
`default` one, or with `projects=K` bench-<n> goes to project `bench-p<n mod K>` (created here).
"""

from __future__ import annotations

import contextlib
import time

SESSIONS_SQL = """
INSERT INTO contexts_sessioncontext
    (project_id, session_id, user_id, agent_id, team_id, mode, summary, goal, plan, progress, handoff_note, status,
     handoff_reason, version, last_message_seq, cursor_seq, created_at, updated_at)
SELECT
    (%(project_ids)s::bigint[])[mod(g, %(projects)s) + 1],
    'bench-' || g,
    'user-' || mod(g, 50000),
    'agent-' || mod(g, 20),
    'team-' || mod(g, 100),
    CASE WHEN mod(g, 2) = 0 THEN 'planning' ELSE 'summary' END,
    'User ' || mod(g, 50000) || ' is migrating a Django service from SQLite to PostgreSQL. They have '
        || 'backed up the data, written the new settings and asked how to move sessions without downtime. '
        || 'The assistant proposed a dual-write period and a checksum comparison before the switch.',
    CASE WHEN mod(g, 2) = 0 THEN 'Move the service to PostgreSQL without losing a session' ELSE '' END,
    CASE WHEN mod(g, 2) = 0 THEN '["Back up the SQLite file", "Create the PostgreSQL database", '
        || '"Dual-write for a day", "Compare checksums", "Switch reads"]' ELSE '[]' END::jsonb,
    CASE WHEN mod(g, 2) = 0 THEN '["Back up the SQLite file", "Create the PostgreSQL database"]'
        ELSE '[]' END::jsonb,
    '',
    CASE WHEN mod(g, 997) = 0 THEN 'handoff_requested' WHEN mod(g, 13) = 0 THEN 'closed' ELSE 'active' END,
    '',
    %(revisions)s,
    2 * %(revisions)s,
    2 * %(revisions)s,
    now() - make_interval(secs => g),
    now() - make_interval(secs => g)
FROM generate_series(%(start)s, %(stop)s - 1) AS g
"""

REVISIONS_SQL = """
INSERT INTO contexts_revision
    (session_id, version, source, actor, reason, snapshot, changed_fields, created_at)
SELECT
    s.id, v, 'extraction', 'model:bench', '',
    jsonb_build_object('mode', s.mode, 'status', 'active', 'summary', s.summary, 'goal', s.goal,
                       'plan', s.plan, 'progress', s.progress, 'handoff_note', ''),
    '["summary"]'::jsonb,
    s.created_at + make_interval(secs => v)
FROM contexts_sessioncontext s CROSS JOIN generate_series(1, %(revisions)s) AS v
WHERE s.id BETWEEN %(first_id)s AND %(last_id)s
"""


@contextlib.contextmanager
def _cursor(database_url: str | None):
    """Django's connection, or with `database_url` a psycopg connection of its own (no Django needed)."""
    if database_url is None:
        from django.db import connection

        with connection.cursor() as cur:
            yield cur
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
            yield cur


def session_count() -> int:
    with _cursor(None) as cur:
        cur.execute("SELECT count(*) FROM contexts_sessioncontext")
        return cur.fetchone()[0]


def project_slug(n: int) -> str:
    return f"bench-p{n}"


def _project_ids(cur, projects: int) -> list[int]:
    """The ids of the projects sessions go to: `default` alone, or bench-p0 .. bench-p<projects - 1>."""
    slugs = ["default"] if projects == 1 else [project_slug(n) for n in range(projects)]
    ids = []
    for slug in slugs:
        cur.execute("INSERT INTO contexts_project (slug, name, created_at) VALUES (%s, %s, now()) "
                    "ON CONFLICT (slug) DO NOTHING", [slug, slug])
        cur.execute("SELECT id FROM contexts_project WHERE slug = %s", [slug])
        ids.append(cur.fetchone()[0])
    return ids


def generate(start: int, stop: int, *, revisions: int = 10, batch: int = 50_000, progress: bool = True,
             database_url: str | None = None, projects: int = 1) -> float:
    """Sessions bench-<start> .. bench-<stop - 1>, each with `revisions` revisions; returns seconds taken.

    Into Django's database, or the one at `database_url` (a tree's own bench database, migrated by that tree).
    With `projects` > 1, bench-<n> belongs to project bench-p<n mod projects>; else all to `default`.
    """
    began = time.monotonic()
    with _cursor(database_url) as cur:
        project_ids = _project_ids(cur, projects)
        # Foreign-key triggers checked row by row are most of a bulk load's time; the rows are
        # consistent by construction, so skip them for this connection only.
        cur.execute("SET session_replication_role = replica")
        cur.execute("SET synchronous_commit = off")
        for lo in range(start, stop, batch):
            hi = min(stop, lo + batch)
            cur.execute(SESSIONS_SQL + " RETURNING id", {"start": lo, "stop": hi, "revisions": revisions,
                                                    "project_ids": project_ids, "projects": len(project_ids)})
            ids = [row[0] for row in cur.fetchall()]
            cur.execute(REVISIONS_SQL, {"revisions": revisions, "first_id": min(ids), "last_id": max(ids)})
            if progress and (stop - start) > batch:
                done = hi - start
                rate = done / (time.monotonic() - began)
                print(f"  {done:>9,} / {stop - start:,} sessions ({rate:,.0f}/s)", flush=True)
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("ANALYZE contexts_sessioncontext")
        cur.execute("ANALYZE contexts_revision")
    return time.monotonic() - began


def table_sizes() -> dict[str, str]:
    with _cursor(None) as cur:
        cur.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relname IN ('contexts_sessioncontext', 'contexts_revision')"
        )
        return dict(cur.fetchall())
