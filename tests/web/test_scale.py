"""The sessions page stays fast with 100,000 sessions: keyset pages, no COUNT(*), no OFFSET."""

from __future__ import annotations

import re
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contexts.models import Project, SessionContext

pytestmark = [pytest.mark.django_db, pytest.mark.heavy]

N = 100_000


COLUMNS = ("project_id, session_id, user_id, agent_id, team_id, mode, summary, goal, plan, progress, handoff_note, "
           "status, handoff_reason, version, last_message_seq, cursor_seq, created_at, updated_at")
STATUS = ("CASE i % 100 WHEN 97 THEN 'handoff_requested' WHEN 98 THEN 'human' WHEN 99 THEN 'closed' "
          "ELSE 'active' END")
POSTGRES = f"""
INSERT INTO contexts_sessioncontext ({COLUMNS})
SELECT {{project}}, 'big-' || lpad(i::text, 6, '0'), 'user-' || (i % 5000), 'agent-' || (i % 7), '',
       CASE WHEN i % 2 = 1 THEN 'planning' ELSE 'summary' END, 'Conversation ' || i || ' about order ' || (i * 7),
       'Goal ' || i, '["a", "b", "c"]', '["a"]', '', {STATUS}, '', 1, 0, 0, now(), now() - i * interval '1 second'
FROM generate_series(0, {N - 1}) AS i
"""
# Timestamps as Django stores them on SQLite (six fractional digits), so keyset comparisons on text hold.
SQLITE = f"""
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {N - 1})
INSERT INTO contexts_sessioncontext ({COLUMNS})
SELECT {{project}}, printf('big-%06d', i), 'user-' || (i % 5000), 'agent-' || (i % 7), '',
       CASE WHEN i % 2 = 1 THEN 'planning' ELSE 'summary' END, 'Conversation ' || i || ' about order ' || (i * 7),
       'Goal ' || i, '["a", "b", "c"]', '["a"]', '', {STATUS}, '', 1, 0, 0,
       strftime('%Y-%m-%d %H:%M:%S', 'now') || '.500000',
       strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || i || ' seconds') || '.500000'
FROM seq
"""


def test_sessions_page_with_100k_sessions(support):
    # One INSERT ... SELECT: building 100,000 rows in Python would take most of this test's time.
    with connection.cursor() as cursor:
        sql = POSTGRES if connection.vendor == "postgresql" else SQLITE
        cursor.execute(sql.format(project=Project.default().pk))
        cursor.execute("ANALYZE contexts_sessioncontext")
    assert SessionContext.objects.count() == N

    timings = {}
    url = "/"
    for page in range(1, 5):  # walk a few pages by cursor
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as ctx:
            html = support.get(url).content.decode()
        timings[f"page {page}"] = time.perf_counter() - started
        assert not any("COUNT(" in q["sql"].upper() and "contexts_sessioncontext" in q["sql"]
                       and "handoff_requested" not in q["sql"] for q in ctx.captured_queries)
        assert not any("OFFSET" in q["sql"].upper() for q in ctx.captured_queries)
        assert len(re.findall(r'href="/sessions/big-', html)) == 25
        url = re.search(r'href="([^"]+)"[^>]*rel="next"', html).group(1).replace("&amp;", "&")
    for name, query in (("search", "/?q=order+86415"), ("status", "/?status=human"),
                        ("needs a human", "/?needs_human=on&mode=planning"), ("agent", "/?agent=agent-3"),
                        ("user", "/?q=user-42"), ("oldest", "/?sort=updated")):
        started = time.perf_counter()
        response = support.get(query)
        timings[name] = time.perf_counter() - started
        assert response.status_code == 200 and "big-" in response.content.decode(), name
    print({k: f"{v * 1000:.0f} ms" for k, v in timings.items()})
    assert max(timings.values()) < 2.0, timings
