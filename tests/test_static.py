from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_htmx_and_css_are_served_by_the_app_itself_without_debug(client, settings):
    # Behind gunicorn with DEBUG off there is no runserver to serve static files: WhiteNoise does.
    assert settings.DEBUG is False
    for path in ("/static/django_htmx/htmx-2.min.js", "/static/contexts/app.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 100


@pytest.mark.django_db
def test_favicon_ico_leads_to_the_icon_without_a_login(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"].startswith("image/svg")
