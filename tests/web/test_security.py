"""Login brute force (django-axes), the Content-Security-Policy and Cache-Control of the staff pages and the admin."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client

from tests.factories import make_api_key, make_session, make_user
from tests.web.conftest import HTMX

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"
LOGIN_URLS = ["/accounts/login/", "/admin/login/"]


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast) that counts how often a password is hashed or checked: the work a lockout must skip."""

    calls = 0

    def encode(self, password, salt):
        type(self).calls += 1
        return super().encode(password, salt)

    def verify(self, password, encoded):
        type(self).calls += 1
        return super().verify(password, encoded)


def attempt(url: str, username: str, password: str, **meta):
    client = Client(**meta)
    return client, client.post(url, {"username": username, "password": password, "next": "/"})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(url: str, username: str, times: int, **meta) -> None:
    for _ in range(times):
        attempt(url, username, "wrong-password", **meta)


# --- 6. Brute force on the login pages ------------------------------------------------------------------------------


@pytest.fixture
def limit(settings) -> int:
    settings.AXES_FAILURE_LIMIT = 3
    return 3


@pytest.mark.parametrize("url", LOGIN_URLS)
def test_after_the_failure_limit_even_the_right_password_is_refused_with_429(url, limit):
    make_user("ada", superuser=True)
    fail(url, "ada", limit)
    client, response = attempt(url, "ada", PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    html = response.content.decode()
    assert "Too many failed login attempts" in html
    assert int(response["Retry-After"]) > 0


def test_the_lockout_page_says_when_to_try_again(limit, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    make_user("ada", superuser=True)
    fail("/accounts/login/", "ada", limit)
    _, response = attempt("/accounts/login/", "ada", PASSWORD)
    assert response["Retry-After"] == "900"
    assert "15 minutes" in response.content.decode()


def test_failures_below_the_limit_do_not_lock_and_a_success_starts_the_count_again(limit):
    make_user("ada", superuser=True)
    fail("/accounts/login/", "ada", limit - 1)
    client, response = attempt("/accounts/login/", "ada", PASSWORD)
    assert response.status_code == 302 and logged_in(client)
    fail("/accounts/login/", "ada", limit - 1)
    client, response = attempt("/accounts/login/", "ada", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_the_lockout_is_per_username_and_address(limit):
    make_user("ada", superuser=True)
    make_user("bob", role="support")
    fail("/accounts/login/", "ada", limit, REMOTE_ADDR="203.0.113.5")
    # The same account from another address, and another account from the same address, still log in.
    client, _ = attempt("/accounts/login/", "ada", PASSWORD, REMOTE_ADDR="198.51.100.7")
    assert logged_in(client)
    client, _ = attempt("/accounts/login/", "bob", PASSWORD, REMOTE_ADDR="203.0.113.5")
    assert logged_in(client)
    client, response = attempt("/accounts/login/", "ada", PASSWORD, REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 429 and not logged_in(client)


def test_the_lockout_ends_after_the_cool_off(limit, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    make_user("ada", superuser=True)
    fail("/accounts/login/", "ada", limit)
    assert attempt("/accounts/login/", "ada", PASSWORD)[1].status_code == 429
    # Sixteen minutes pass.
    AccessAttempt = apps.get_model("axes", "AccessAttempt")
    for row in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=row.pk).update(attempt_time=row.attempt_time - timedelta(minutes=16))
    client, response = attempt("/accounts/login/", "ada", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_a_locked_out_attempt_never_runs_the_password_hasher(limit, settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    make_user("ada", superuser=True)
    fail("/accounts/login/", "ada", limit)
    CountingHasher.calls = 0
    attempt("/accounts/login/", "ada", "wrong-password")
    attempt("/accounts/login/", "ada", PASSWORD)
    attempt("/admin/login/", "ada", "another-guess")
    assert CountingHasher.calls == 0
    # The hasher really is the one in use: an attempt that is not locked out runs it.
    attempt("/accounts/login/", "someone-else", "guess")
    assert CountingHasher.calls > 0


def test_behind_proxies_the_client_address_is_the_one_the_trusted_proxy_saw(limit, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    make_user("ada", superuser=True)
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    # The attacker prepends addresses of their own; the proxy appends the one it saw.
    fail("/accounts/login/", "ada", limit, HTTP_X_FORWARDED_FOR="203.0.113.5", **proxy)
    client, response = attempt("/accounts/login/", "ada", PASSWORD,
                               HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5", **proxy)
    assert response.status_code == 429 and not logged_in(client)
    # Someone else behind the same proxy is not locked out with them.
    client, _ = attempt("/accounts/login/", "ada", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy)
    assert logged_in(client)


def test_without_proxies_a_forged_forwarded_for_header_does_not_escape_the_lockout(limit):
    make_user("ada", superuser=True)
    for i in range(limit):
        attempt("/accounts/login/", "ada", "wrong", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}")
    client, response = attempt("/accounts/login/", "ada", PASSWORD, REMOTE_ADDR="203.0.113.5",
                               HTTP_X_FORWARDED_FOR="9.9.9.9")
    assert response.status_code == 429 and not logged_in(client)


def test_the_api_is_not_affected_by_a_locked_out_address(limit, client):
    make_user("ada", superuser=True)
    fail("/accounts/login/", "ada", limit)
    _, raw = make_api_key("read")
    response = client.get("/api/v1/sessions", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200


# --- 11. Content-Security-Policy and Cache-Control ------------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def cache_control(response) -> set[str]:
    return {d.strip().lower() for d in response.headers.get("Cache-Control", "").split(",") if d.strip()}


@pytest.fixture
def pages(editor):
    session = make_session("sec-1", content={"summary": "Secret summary", "plan": ["a"]})
    return editor, [
        ("/", {}), ("/", HTMX), ("/?q=sec", HTMX), ("/handoffs/", {}), (f"/sessions/{session.session_id}/", {}),
        (f"/sessions/{session.session_id}/edit/", {}), ("/sessions/missing/", {}),
    ]


STRICT = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}


def test_staff_pages_send_a_strict_content_security_policy(pages):
    client, urls = pages
    for url, headers in urls:
        response = client.get(url, **headers)
        assert policy(response) == STRICT, url


def test_login_lockout_and_admin_pages_send_the_same_policy(superuser, limit):
    assert policy(Client().get("/accounts/login/")) == STRICT
    for url in ("/admin/", "/admin/contexts/sessioncontext/", "/admin/contexts/apikey/add/"):
        assert policy(superuser.get(url)) == STRICT, url
    make_user("bob", role="support")
    fail("/accounts/login/", "bob", limit)
    assert policy(attempt("/accounts/login/", "bob", PASSWORD)[1]) == STRICT


def test_only_the_api_docs_page_runs_an_inline_script_and_only_with_its_nonce(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    directives = policy(response)
    nonces = [v for v in directives["script-src"] if v.startswith("'nonce-")]
    assert len(nonces) == 1 and "'unsafe-inline'" not in directives["script-src"]
    assert directives["style-src"] == ["'self'", nonces[0]]
    # Swagger UI's icons are data: images; only this page allows them.
    assert directives["img-src"] == ["'self'", "data:"]
    nonce = nonces[0][len("'nonce-"):-1]
    html = response.content.decode()
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline)
    # Another request, another nonce.
    assert nonce not in client.get("/api/docs/")["Content-Security-Policy"]


class _InlineCode(HTMLParser):
    """Everything a strict policy would refuse to run or apply: inline scripts, handlers, style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._script_without_src = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and "src" not in a and a.get("type") != "application/json":
            self._script_without_src = True
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name.startswith("on") or name.startswith("hx-on") or name == "style":
                self.found.append(f"{tag} {name}={value!r}")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}={value!r}")

    def handle_data(self, data):
        if self._script_without_src and data.strip():
            self.found.append(f"<script>{data.strip()[:60]}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._script_without_src = False


def test_staff_and_admin_pages_have_no_inline_scripts_handlers_or_styles(pages, superuser):
    client, urls = pages
    answers = [client.get(url, **headers) for url, headers in urls]
    answers += [superuser.get(url) for url in ("/admin/", "/admin/contexts/sessioncontext/",
                                               "/admin/contexts/apikey/add/")]
    answers.append(Client().get("/accounts/login/"))
    for response in answers:
        parser = _InlineCode()
        parser.feed(response.content.decode())
        assert parser.found == [], response.request["PATH_INFO"]


def test_authenticated_staff_pages_are_private_and_never_stored(pages, superuser):
    client, urls = pages
    for url, headers in urls:
        response = client.get(url, **headers)
        assert {"private", "no-store"} <= cache_control(response), url
        assert "public" not in cache_control(response), url
    for url in ("/admin/", "/admin/contexts/sessioncontext/"):
        assert {"private", "no-store"} <= cache_control(superuser.get(url)), url


def test_an_htmx_action_answer_is_never_stored(editor):
    session = make_session("sec-2", content={"summary": "s"})
    response = editor.post(f"/sessions/{session.session_id}/edit/",
                           {"version": session.version, "summary": "new", "reason": ""}, **HTMX)
    assert response.status_code < 500
    assert {"private", "no-store"} <= cache_control(response)


def test_a_refused_htmx_action_is_never_stored(support):
    session = make_session("sec-3", content={"summary": "s"})
    response = support.post(f"/sessions/{session.session_id}/edit/", {"version": 1, "summary": "x"}, **HTMX)
    assert response.status_code == 403
    assert {"private", "no-store"} <= cache_control(response)
