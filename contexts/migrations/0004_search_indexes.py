"""Trigram indexes for the staff search box (`selectors.session_search`) on PostgreSQL.

Django's `icontains` is `UPPER(col::text) LIKE UPPER('%q%')` on PostgreSQL, which no B-tree index can
serve, so without these the search reads the whole sessions table (about 2 s at 1,000,000 sessions).
A GIN index with `gin_trgm_ops` on the same `UPPER(col::text)` expression serves those LIKEs for any
pattern of 3 characters or more, and the admin's search over the same columns uses them too.

SQLite: nothing happens (it has no pg_trgm; its search stays a scan, fine at its sizes).
If pg_trgm cannot be created (no privilege, not installed), the migration logs that and creates no
index: the search still works, only slower. Reversing drops the indexes but keeps the extension,
which something else in the database may use.

Plain CREATE INDEX locks the table against writes while it builds (about 1-3 minutes per index at
1,000,000 sessions on 2 cores). An operator with a large live table should create the same indexes
beforehand with `CREATE INDEX CONCURRENTLY IF NOT EXISTS ...` (the statements below, one at a time,
outside a transaction); this migration then finds them and skips them.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger(__name__)

TABLE = "contexts_sessioncontext"
# Index name -> column, for every column `session_search` matches by substring.
INDEXES = {
    "ctx_session_id_trgm": "session_id",
    "ctx_user_id_trgm": "user_id",
    "ctx_summary_trgm": "summary",
    "ctx_goal_trgm": "goal",
}


def _create_extension(schema_editor) -> bool:
    connection = schema_editor.connection
    try:
        # A savepoint, so a refusal does not abort the migration's transaction.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        logger.warning("pg_trgm is not available (%s); the session search will work without its indexes", exc)
        return False
    return True


def create_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql" or not _create_extension(schema_editor):
        return
    with schema_editor.connection.cursor() as cursor:
        # More memory makes a GIN build on a big table several times faster; LOCAL ends with the migration.
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for name, column in INDEXES.items():
            cursor.execute(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON "{TABLE}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
            )
        # Statistics on the indexed expressions, so the planner can tell a rare word (use the index) from a
        # common one (walk the updated_at index and stop at a page); no row changes, so autovacuum would not.
        cursor.execute(f'ANALYZE "{TABLE}"')


def drop_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("contexts", "0003_extraction_model_calls_enqueued_at"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
