"""The sessions page's search box: what it finds, on SQLite and PostgreSQL, and (PostgreSQL) the indexes behind it."""

from __future__ import annotations

import re

import pytest
from django.db import connection, transaction

from contexts import selectors
from contexts.models import Project
from tests.factories import make_session
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db

TRIGRAM_INDEXES = {"ctx_session_id_trgm", "ctx_user_id_trgm", "ctx_summary_trgm", "ctx_goal_trgm"}


def session_ids(html: str) -> list[str]:
    return sorted(re.findall(r'<a class="mono"[^>]* href="/sessions/([^/]+)/(?:\?[^"]*)?">', html))


@pytest.fixture
def sessions():
    make_session("ticket-48213", user_id="customer-7781", content={"summary": "The printer jams on page two."})
    make_session("ticket-50990", user_id="customer-1204",
                 content={"goal": "Book a flight to Oslo", "summary": "Asked about seats."})
    make_session("chat-00017", user_id="customer-7702", content={"summary": "Refund for a late flight."})


@pytest.mark.parametrize(("q", "expected"), [
    ("printer", ["ticket-48213"]),                      # a word in the summary
    ("OSLO", ["ticket-50990"]),                         # a word in the goal, any case
    ("flight", ["chat-00017", "ticket-50990"]),         # goal of one, summary of the other
    ("8213", ["ticket-48213"]),                         # part of a session id
    ("ticket", ["ticket-48213", "ticket-50990"]),
    ("mer-77", ["chat-00017", "ticket-48213"]),         # part of a user id
    ("customer-1204", ["ticket-50990"]),                # a whole user id
    ("flight customer-77", ["chat-00017"]),             # every word must match, each in any column
    ("late flight", ["chat-00017"]),
    ('"late flight"', ["chat-00017"]),                  # a quoted phrase
    ('"flight late"', []),
    ("flight 50%", []),                                 # LIKE wildcards are plain characters
    ("zebra", []),
])
def test_search_finds_sessions_by_text_and_by_part_of_an_id(support, sessions, q, expected):
    response = support.get("/", {"q": q}, **HTMX)
    assert response.status_code == 200
    assert session_ids(response.content.decode()) == expected


def test_search_keeps_the_filters_and_the_newest_first_order(support, sessions):
    html = support.get("/", {"q": "flight", "mode": "planning"}).content.decode()
    assert session_ids(html) == ["chat-00017", "ticket-50990"]
    html = support.get("/", {"q": "customer"}).content.decode()
    listed = re.findall(r'href="/sessions/([^/]+)/(?:\?[^"]*)?"', html)
    assert listed[:3] == ["chat-00017", "ticket-50990", "ticket-48213"]


def test_a_search_shorter_than_three_characters_matches_ids_only_and_says_so(support):
    make_session("ab", user_id="zz", content={"summary": "ab in the text"})
    make_session("ab-2", user_id="someone", content={"summary": "mentions zz"})
    make_session("cd", user_id="x", content={"summary": "ab and zz again"})
    note = "Searches shorter than 3 characters match only a session id or user id exactly"

    html = support.get("/", {"q": "ab"}).content.decode()
    assert session_ids(html) == ["ab", "ab-2"]  # exact session id, and session ids starting with it
    assert note in html
    html = support.get("/", {"q": "zz"}, **HTMX).content.decode()
    assert session_ids(html) == ["ab"]  # exact user id; not the summaries that mention it
    assert note in html
    html = support.get("/", {"q": "again"}).content.decode()
    assert session_ids(html) == ["cd"] and note not in html


@pytest.mark.skipif(connection.vendor != "postgresql", reason="trigram indexes are PostgreSQL only")
def test_postgresql_has_trigram_indexes_that_the_search_uses():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() is not None
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'contexts_sessioncontext'")
        indexes = dict(cursor.fetchall())
    assert set(indexes) >= TRIGRAM_INDEXES
    assert all("gin" in indexes[name] and "gin_trgm_ops" in indexes[name] for name in TRIGRAM_INDEXES)

    # The indexes are on the very expression Django writes for icontains (UPPER(col::text) LIKE ...), under the
    # project's scope too: without a sequential scan, and without the project's B-tree indexes (which the planner
    # rightly prefers while a project has only some ten thousand rows to walk), the plan must be a BitmapOr over
    # them. The indexes are dropped inside the transaction, which is rolled back.
    project = Project.default()
    make_session("plan-1", content={"summary": "needle"})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending checks, or the table cannot be altered
        cursor.execute("ALTER TABLE contexts_sessioncontext DROP CONSTRAINT session_unique_per_project")
        for name in ("ctx_updated_idx", "ctx_user_updated_idx", "ctx_agent_updated_idx", "ctx_status_updated_idx",
                     "ctx_handoff_queue_idx"):
            cursor.execute(f"DROP INDEX {name}")
        plan = selectors.session_search(project=project, q="needle").order_by().explain()
        transaction.set_rollback(True)
    used = set(re.findall(r"Bitmap Index Scan on (ctx_\w+)", plan))
    assert used == TRIGRAM_INDEXES, plan
