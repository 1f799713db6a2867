from __future__ import annotations

import re

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


@pytest.mark.django_db
def test_collected_static_files_get_hashed_names_and_a_one_year_cache_lifetime(client, settings, tmp_path):
    # Production runs `collectstatic` (make run-stack does): pages then link content-hashed names that browsers
    # may keep for good, so a deploy never serves a stale app.css under an old name.
    from django.core.management import call_command
    from django.test import Client

    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {**settings.STORAGES}  # the static files storage is built anew for the new root
    call_command("collectstatic", "--noinput", verbosity=0)
    settings.STORAGES = {**settings.STORAGES}
    assert (tmp_path / "staticfiles.json").exists()

    from django.templatetags.static import static

    css = static("contexts/app.css")
    assert re.fullmatch(r"/static/contexts/app\.[0-9a-f]{12}\.css", css), css
    response = Client().get(css, headers={"Accept-Encoding": "gzip"})  # a new client: WhiteNoise rescans the root
    assert response.status_code == 200
    assert response["Cache-Control"] == "max-age=315360000, public, immutable"
    assert response["Content-Encoding"] == "gzip"


def test_without_collectstatic_pages_link_plain_names_that_are_served(client, settings, tmp_path):
    # Tests, `make run` and a first start before collectstatic have no manifest: plain names, still served.
    from django.templatetags.static import static

    settings.STATIC_ROOT = tmp_path  # nothing collected there (a checkout's staticfiles/ may have a manifest)
    settings.STORAGES = {**settings.STORAGES}
    assert static("contexts/app.css") == "/static/contexts/app.css"
    assert client.get("/static/contexts/app.css").status_code == 200
