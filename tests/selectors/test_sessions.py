"""Reads of sessions the API and the staff pages share: one session, search, and the one keyset pager."""

from __future__ import annotations

import pytest

from contexts import selectors, services
from contexts.exceptions import NotFound
from contexts.models import Project, SessionContext
from contexts.services import Actor
from tests.factories import make_session, make_user

pytestmark = pytest.mark.django_db


def _search(**filters):
    return selectors.session_search(project=Project.default(), **filters)


def _ids(rows) -> list[str]:
    return [s.session_id for s in rows]


@pytest.fixture
def twelve():
    """Twelve sessions, p-01 the least recently updated."""
    return [make_session(f"p-{i:02d}", content={"summary": f"session {i}"}) for i in range(1, 13)]


def test_walking_forward_shows_every_session_once_newest_first(twelve):
    seen, cursor, pages = [], "", 0
    while True:
        page = selectors.session_page(_search(), after=cursor, size=5)
        seen += _ids(page.rows)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"p-{i:02d}" for i in range(12, 0, -1)]
    assert pages == 3


def test_next_then_previous_comes_back_to_the_same_page(twelve):
    first = selectors.session_page(_search(), size=5)
    second = selectors.session_page(_search(), after=first.next_cursor, size=5)
    third = selectors.session_page(_search(), after=second.next_cursor, size=5)

    back = selectors.session_page(_search(), before=third.prev_cursor, size=5)

    assert _ids(back.rows) == _ids(second.rows) == ["p-07", "p-06", "p-05", "p-04", "p-03"]
    assert first.prev_cursor is None and _ids(third.rows) == ["p-02", "p-01"] and third.next_cursor is None
    # Back from the second page reaches the start: a full first page, not a short one.
    start = selectors.session_page(_search(), before=second.prev_cursor, size=5)
    assert _ids(start.rows) == _ids(first.rows)


def test_a_page_sorted_by_id_pages_by_id(twelve):
    first = selectors.session_page(_search(), sort="session_id", size=4)
    second = selectors.session_page(_search(), sort="session_id", after=first.next_cursor, size=4)
    assert _ids(first.rows) + _ids(second.rows) == [f"p-{i:02d}" for i in range(1, 9)]


def test_a_changed_session_moves_to_the_front(twelve):
    services.snapshot_update(session=twelve[0], expected_version=1, changes={"summary": "new"}, source="api",
                             actor=Actor.system("t"))
    assert _ids(selectors.session_page(_search(), size=2).rows) == ["p-01", "p-12"]


@pytest.mark.parametrize("cursor", ["junk", "12.x", "99999999999999999999999999.1"])
def test_a_mangled_cursor_starts_from_the_first_page(twelve, cursor):
    assert not selectors.cursor_is_valid(cursor)
    assert selectors.cursor_is_valid(selectors.session_page(_search(), size=3).next_cursor)
    page = selectors.session_page(_search(), after=cursor, size=3)
    assert _ids(page.rows) == ["p-12", "p-11", "p-10"] and page.prev_cursor is None


def test_search_needs_every_word_in_some_column_and_keeps_quoted_words_together():
    make_session("lisbon-1", content={"summary": "Trip to Lisbon in May", "goal": "Book a hotel"}, user_id="ana")
    make_session("porto-1", content={"summary": "Trip to Porto", "goal": "Book a hotel in May"})
    make_session("other", content={"summary": "Refund for order 1234"})

    assert sorted(_ids(_search(q="trip may"))) == ["lisbon-1", "porto-1"]
    assert _ids(_search(q="lisbon hotel")) == ["lisbon-1"]
    assert _ids(_search(q='"order 1234"')) == ["other"]
    assert selectors.search_terms('"order 1234" refund') == ["order 1234", "refund"]
    assert list(_search(q="trip refund")) == []


def test_a_search_of_short_words_matches_ids_only():
    make_session("ab", content={"summary": "ab in the summary"})
    make_session("ab-2", user_id="x")
    make_session("zz", content={"summary": "mentions ab"}, user_id="ab")

    assert selectors.search_matches_ids_only("ab") and not selectors.search_matches_ids_only("abc")
    assert sorted(_ids(_search(q="ab"))) == ["ab", "ab-2", "zz"]  # id, id prefix, user id


def test_filters_and_the_needs_a_human_view():
    waiting = make_session("q-1", mode="summary")
    taken = make_session("q-2")
    make_session("q-3")
    services.handoff_request(session=waiting, reason="help", actor=Actor.system("agent"))
    services.handoff_claim(session=taken, actor=Actor.for_user(make_user("alice", role="support")))

    assert sorted(_ids(_search(needs_human=True))) == ["q-1", "q-2"]
    assert _ids(_search(status="human")) == ["q-2"]
    assert _ids(_search(mode="summary")) == ["q-1"]
    project = Project.default()
    assert _ids(selectors.handoff_queue(project=project)) == ["q-1"]
    assert selectors.handoff_waiting_count(project=project) == 1
    assert _ids(selectors.sessions_with_people(project=Project.default())) == ["q-2"]


def test_context_get_reads_the_columns_asked_for_with_the_assignee_by_name():
    session = make_session("c-1", content={"summary": "s", "plan": ["a"]})
    services.handoff_claim(session=session, actor=Actor.for_user(make_user("alice", role="support")))

    row = selectors.context_get("c-1", ["summary", "plan", "version", "assignee"], project=Project.default())

    assert row == {"summary": "s", "plan": ["a"], "version": 2, "assignee": "alice"}
    assert selectors.context_version("c-1", project=Project.default()) == 2
    assert selectors.session_get("c-1", project=Project.default()).pk == SessionContext.objects.get(session_id="c-1").pk


@pytest.mark.parametrize("read", [lambda: selectors.session_get("nope", project=Project.default()),
                                  lambda: selectors.context_version("nope", project=Project.default()),
                                  lambda: selectors.context_get("nope", ["summary"], project=Project.default())],
                         ids=["session_get", "context_version", "context_get"])
def test_a_session_that_does_not_exist_is_not_found(read):
    with pytest.raises(NotFound) as info:
        read()
    assert info.value.details == {"session_id": "nope"}
