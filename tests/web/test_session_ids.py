"""Staff pages for session ids that cannot exist: a plain 404 page, whatever the database makes of the id."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/sessions/a%00b/", "/sessions/a%00b/edit/", "/sessions/%00/take/",
                                  "/sessions/a%20b/", "/sessions/%E2%82%AC/"])
def test_a_session_id_no_session_can_have_is_a_404_page(admin_client, path):
    response = admin_client.get(path) if not path.endswith(("edit/", "take/")) else admin_client.post(path, {})
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
