"""GET /api/v1/sessions pages with the same keyset pager as the staff list (selectors.session_page)."""

from __future__ import annotations

import pytest

from contexts import selectors
from contexts.models import Project
from tests.api.conftest import assert_error
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def _walk(agent, url: str, link: str) -> list[list[str]]:
    pages = []
    while url:
        page = agent.get(url).json()
        pages.append([s["session_id"] for s in page["results"]])
        url = page[link]
    return pages


def test_next_then_previous_walks_the_same_pages_back(agent):
    for i in range(8):
        make_session(f"pager-{i}")
    forward = _walk(agent, "/api/v1/sessions?limit=3", "next")
    assert forward == [["pager-7", "pager-6", "pager-5"], ["pager-4", "pager-3", "pager-2"], ["pager-1", "pager-0"]]
    last = agent.get("/api/v1/sessions?limit=3").json()
    while last["next"]:
        last = agent.get(last["next"]).json()
    backward = _walk(agent, last["previous"], "previous")
    assert backward == forward[-2::-1]


def test_the_api_pages_are_the_staff_lists_pages(agent):
    for i in range(5):
        make_session(f"same-{i}")
    api_first = [s["session_id"] for s in agent.get("/api/v1/sessions?limit=2").json()["results"]]
    staff_list = selectors.session_search(project=Project.default())
    staff_first = [s.session_id for s in selectors.session_page(staff_list, size=2).rows]
    assert api_first == staff_first == ["same-4", "same-3"]


@pytest.mark.parametrize("cursor", ["a.not-a-cursor", "x.1.2", "cD0yMDI2"])
def test_a_mangled_cursor_is_a_404_saying_it_is_the_cursor(agent, cursor):
    make_session("mangled-0")
    error = assert_error(agent.get(f"/api/v1/sessions?cursor={cursor}"), 404, "not_found")
    assert "not one this list gave" in error["message"]


def test_limit_is_bounded(agent):
    for i in range(3):
        make_session(f"limit-{i}")
    response = agent.get("/api/v1/sessions?limit=100000")
    assert response.status_code == 200 and len(response.json()["results"]) == 3


def test_a_limit_of_more_digits_than_python_converts_still_gets_the_largest_page(agent):
    # Python refuses to turn a string of more than 4300 digits into an int (ValueError): that is still a limit
    # above the maximum, on every list, first page or one a cursor names.
    for i in range(2):
        make_session(f"huge-{i}", content={"summary": f"one {i}"})
    agent.post("/api/v1/sessions/huge-0/messages", {"messages": [{"role": "user", "content": "hi"}]})
    huge = "9" * 5000
    for path, rows in (("/api/v1/sessions", 2), ("/api/v1/sessions/huge-0/messages", 1),
                       ("/api/v1/sessions/huge-0/revisions", 1), ("/api/v1/sessions/huge-0/runs", 0)):
        response = agent.get(f"{path}?limit={huge}")
        assert response.status_code == 200, (path, response.content[:300])
        assert len(response.json()["results"]) == rows
    agent.patch("/api/v1/sessions/huge-0/context", {"summary": "two", "version": 1})
    for path in ("/api/v1/sessions", "/api/v1/sessions/huge-0/revisions"):
        second_page = agent.get(f"{path}?limit=1").json()["next"].replace("limit=1", f"limit={huge}")
        response = agent.get(second_page)
        assert response.status_code == 200, (path, response.content[:300])
        assert len(response.json()["results"]) == 1
    assert_error(agent.get(f"/api/v1/sessions?limit={'0' * 5000}"), 400, "invalid")
