"""The pages run a bounded number of SQL queries however many sessions, revisions or messages exist."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contexts import services
from contexts.models import ExtractionRun
from contexts.services import Actor
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db


def _fill(n: int, prefix: str) -> str:
    """n sessions; the first has n revisions, n messages, n runs and n handoff events."""
    people = make_user(f"{prefix}-person", role="support")
    first = None
    for i in range(n):
        s = make_session(f"{prefix}-{i}", content={"summary": f"s{i}", "plan": ["a", "b"], "progress": ["a"]})
        first = first or s
    for i in range(n):
        first = services.snapshot_update(session=first, expected_version=first.version,
                                         changes={"summary": f"v{i}"}, source="api", actor=Actor.system("agent"))
        services.handoff_add_note(session=first, note=f"note {i}", actor=Actor.for_user(people))
    services.messages_append(session=first, messages=[{"role": "user", "content": f"m{i}"} for i in range(n)])
    ExtractionRun.objects.bulk_create(ExtractionRun(session=first, status="failed", error="boom") for _ in range(n))
    services.handoff_claim(session=first, actor=Actor.for_user(people))
    return first.session_id


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_query_counts_do_not_grow_with_rows(support, django_assert_max_num_queries):
    small = _fill(3, "small")
    before = {page: _count(support, url) for page, url in
              (("list", "/"), ("detail", f"/sessions/{small}/"), ("queue", "/handoffs/"))}
    big = _fill(60, "big")
    after = {page: _count(support, url) for page, url in
             (("list", "/"), ("detail", f"/sessions/{big}/"), ("queue", "/handoffs/"))}
    assert before == after
    with django_assert_max_num_queries(10):
        support.get("/")
    # 12, the usage line, the lock panel's locks, proposals, live-token part, the project and the switcher's list
    with django_assert_max_num_queries(18):
        support.get(f"/sessions/{big}/")
