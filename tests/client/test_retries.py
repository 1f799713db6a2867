"""429 and 503 are retried honouring Retry-After, a bounded number of times and for a bounded wait: against the live
server's own throttle, and against a small local server that answers 503 before it answers 200."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2 as httpx
import pytest
from sessionctx_client import (
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    SessionCtxError,
    VersionConflictError,
)

from contexts import services
from contexts.models import SessionContext
from contexts.services import Actor
from tests.client.conftest import open_client
from tests.concurrency import in_another_connection
from tests.factories import make_session


@pytest.fixture
def throttle(settings):
    def set_rate(rate: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": rate}}

    return set_rate


def test_a_throttled_read_waits_retry_after_and_succeeds(connect, throttle, recording):
    throttle("2/s")
    make_session("r-1")
    ctx = connect("read", transport=recording)
    ctx.get_context("r-1")
    ctx.get_context("r-1")

    started = time.monotonic()
    assert ctx.get_context("r-1")["session_id"] == "r-1"  # the third in the second: 429, Retry-After: 1, then 200
    assert time.monotonic() - started >= 0.9
    assert [status for *_, status in recording.seen] == [200, 304, 429, 304]  # the cache answers 304s


def test_a_retry_after_longer_than_the_client_waits_raises_rate_limited_at_once(connect, throttle):
    throttle("2/min")
    make_session("r-2")
    ctx = connect("read", max_retry_wait=5)
    ctx.get_context("r-2")
    ctx.get_context("r-2")

    started = time.monotonic()
    with pytest.raises(RateLimitedError) as caught:
        ctx.get_context("r-2")
    assert time.monotonic() - started < 1
    assert (caught.value.status, caught.value.code) == (429, "throttled")
    assert 5 < caught.value.retry_after <= 60


class Flaky:
    """A local HTTP server that answers 503 (the API's error shape, Retry-After) `failures` times, then 200."""

    def __init__(self, failures: int, retry_after: str | None) -> None:
        self.failures = failures
        self.times: list[float] = []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                flaky.times.append(time.monotonic())
                if len(flaky.times) <= flaky.failures:
                    status, body = 503, {"error": {"code": "unavailable", "message": "The database does not answer.",
                                                   "details": {}}}
                else:
                    status, body = 200, {"status": "ok", "checks": {"database": "ok"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 503 and retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky():
    servers = []

    def start(failures: int, retry_after: str | None = "1") -> Flaky:
        servers.append(Flaky(failures, retry_after))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def client_of(form):
    closers = []

    def client_of(url: str, **options):
        client, close = open_client(form, url, "sck_test", **options)
        closers.append(close)
        return client

    yield client_of
    for close in closers:
        close()


def test_a_503_is_retried_after_retry_after(flaky, client_of):
    server = flaky(failures=1, retry_after="1")
    assert client_of(server.url).health()["status"] == "ok"
    assert len(server.times) == 2
    assert server.times[1] - server.times[0] >= 0.95  # as long as Retry-After said


def test_without_retry_after_retries_back_off_and_stop_after_max_retries(flaky, client_of):
    server = flaky(failures=10, retry_after=None)
    with pytest.raises(ServiceUnavailableError) as caught:
        client_of(server.url, max_retries=2).health()
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "unavailable", None)
    assert len(server.times) == 3  # the call and two retries
    gaps = [later - earlier for earlier, later in zip(server.times, server.times[1:], strict=False)]
    assert 0.45 <= gaps[0] < 0.9 and 0.95 <= gaps[1] < 1.5  # 0.5 s, then 1 s


def test_no_retries_when_max_retries_is_zero(flaky, client_of):
    server = flaky(failures=1, retry_after="1")
    with pytest.raises(ServiceUnavailableError) as caught:
        client_of(server.url, max_retries=0).health()
    assert caught.value.retry_after == 1 and len(server.times) == 1


def test_a_request_past_the_timeout_raises_httpx_timeout(client_of):
    import socket

    import httpx2 as httpx

    # A listener that accepts and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client_of(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5).health()
        assert time.monotonic() - started < 2


def test_a_304_the_client_holds_no_answer_for_is_asked_again_without_if_none_match():
    import httpx2 as httpx
    from sessionctx_client import SessionCtxClient

    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("If-None-Match"))
        if len(seen) == 1:  # as if the answer was evicted while this request was out
            return httpx.Response(304, headers={"ETag": '"4"'})
        return httpx.Response(200, json={"session_id": "r-3", "version": 4}, headers={"ETag": '"4"'})

    with SessionCtxClient("http://sessionctx.test", "sck_test", transport=httpx.MockTransport(answer)) as ctx:
        assert ctx.get_context("r-3") == {"session_id": "r-3", "version": 4}
        assert ctx.get_context("r-3") == {"session_id": "r-3", "version": 4}
    assert seen == [None, None, '"4"']


def _mock_client(answer):
    import httpx2 as httpx
    from sessionctx_client import SessionCtxClient

    return SessionCtxClient("http://sessionctx.test", "sck_test", transport=httpx.MockTransport(answer))


def test_a_502_or_504_from_a_proxy_in_front_is_retried_and_then_an_outage():
    import httpx2 as httpx

    answers = [502, 504, 200]
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        status = answers.pop(0) if answers else 502
        if status == 200:
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(status, text=f"<html>{status} from nginx</html>", headers={"Retry-After": "0"})

    with _mock_client(answer) as ctx:
        assert ctx.health() == {"status": "ok"} and len(seen) == 3
        with pytest.raises(ServiceUnavailableError) as caught:  # what the integrations treat as an outage
            ctx.health()
    assert caught.value.status == 502


def test_a_batch_without_idempotency_keys_is_retried_under_the_same_keys():
    import httpx2 as httpx

    bodies = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:  # stored, but the answer was lost: the API says 503
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "x", "details": {}}},
                                  headers={"Retry-After": "0"})
        return httpx.Response(202, json={"stored": 0, "duplicates": 2, "update": None})

    with _mock_client(answer) as ctx:
        ctx.post_messages("keys-1", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello",
                                                                          "idempotency_key": "mine"}])
    first, retry = ([m["idempotency_key"] for m in body["messages"]] for body in bodies)
    assert first == retry and first[1] == "mine" and first[0].startswith("auto-")


def test_erasing_a_user_drops_every_cached_context():
    import httpx2 as httpx

    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers.get("If-None-Match")))
        if request.method == "DELETE":
            return httpx.Response(200, json={"user_id": "u-9", "deleted": {}})
        return httpx.Response(200, json={"session_id": "gdpr-1", "version": 1, "summary": "card 4242"},
                              headers={"ETag": '"1"'})

    with _mock_client(answer) as ctx:
        ctx.get_context("gdpr-1")
        ctx.erase_user("u-9")
        ctx.get_context("gdpr-1")  # a new session of that id may be at version 1 too: no 304 for the old one
    assert seen == [("GET", None), ("DELETE", None), ("GET", None)]


@pytest.fixture
def redirecting():
    """A local server that answers every request 301 to https://, as a proxy does for an http:// address."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(301)
            self.send_header("Location", f"https://ctx.example.com{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_redirect_raises_naming_where_to_instead_of_passing_for_an_answer(redirecting, client_of):
    ctx = client_of(redirecting)
    for call in (lambda: ctx.post_messages("r-301", [{"role": "user", "content": "hi"}]),
                 lambda: ctx.get_context("r-301")):
        with pytest.raises(SessionCtxError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (301, "redirect")
        assert caught.value.details["location"].startswith("https://ctx.example.com/api/v1/sessions/r-301/")
        assert caught.value.details["location"] in caught.value.message


class _LosesTheFirstWritesAnswer:
    """In front of the live server, as a proxy whose upstream times out: the first PATCH or PUT reaches the server
    (and is applied), and its answer is replaced by a 502."""

    methods = ("PATCH", "PUT")

    def __init__(self, meanwhile=None) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.meanwhile = meanwhile  # what someone else does before the client tries again

    def note(self, request, response):
        if request.method in self.methods and not any(method == request.method for method, *_ in self.seen):
            response = httpx.Response(502, text="<html>502 Bad Gateway</html>", headers={"Retry-After": "0"})
            if self.meanwhile is not None:
                self.meanwhile()
        self.seen.append((request.method, request.url.path.rsplit("/", 1)[-1], response.status_code))
        return response


class _SyncLoses(_LosesTheFirstWritesAnswer, httpx.HTTPTransport):
    def __init__(self, meanwhile=None) -> None:
        _LosesTheFirstWritesAnswer.__init__(self, meanwhile)
        httpx.HTTPTransport.__init__(self)

    def handle_request(self, request):
        response = super().handle_request(request)
        response.read()
        return self.note(request, response)


class _AsyncLoses(_LosesTheFirstWritesAnswer, httpx.AsyncHTTPTransport):
    def __init__(self, meanwhile=None) -> None:
        _LosesTheFirstWritesAnswer.__init__(self, meanwhile)
        httpx.AsyncHTTPTransport.__init__(self)

    async def handle_async_request(self, request):
        response = await super().handle_async_request(request)
        await response.aread()
        return self.note(request, response)


@pytest.mark.parametrize("method", ["update_context", "replace_context"])
def test_a_retried_write_whose_first_try_landed_answers_its_result_not_a_version_conflict(connect, form, method):
    make_session("r-landed", content={"summary": "before", "goal": "Lisbon in May"})
    loses = _SyncLoses if form == "sync" else _AsyncLoses
    proxy = loses()
    ctx = connect("read", "write", transport=proxy)

    # Sent as a model writes it (a trailing line break, CRLF in a step): stored stripped, and still recognised.
    written = getattr(ctx, method)("r-landed", expected_version=1, summary="after\n", plan=[" Book\r\nflights "],
                                   reason="the agent's note")

    assert (written["summary"], written["plan"], written["version"]) == ("after", ["Book\nflights"], 2)
    assert written["goal"] == ("Lisbon in May" if method == "update_context" else "")
    verb = "PATCH" if method == "update_context" else "PUT"
    # Sent once more after the 502, refused as the version had moved (by itself), then read to tell.
    assert proxy.seen == [(verb, "context", 502), (verb, "context", 412), ("GET", "context", 200)]
    # Written on an old version, it is a conflict as ever.
    with pytest.raises(VersionConflictError):
        getattr(ctx, method)("r-landed", expected_version=1, summary="after", reason="again")


def test_a_retried_write_is_a_conflict_when_someone_else_wrote_after_its_first_try(connect, form):
    session = make_session("r-landed-2", content={"summary": "before"})

    def write():
        current = SessionContext.objects.get(pk=session.pk)
        services.snapshot_update(session=current, expected_version=current.version, changes={"goal": "Porto"},
                                 source="api", actor=Actor.system("someone else"))

    # On a connection of its own (the async client calls it from its event loop, where the ORM may not run).
    proxy = (_SyncLoses if form == "sync" else _AsyncLoses)(lambda: in_another_connection(write))
    ctx = connect("read", "write", transport=proxy)

    with pytest.raises(VersionConflictError) as caught:  # its first try made 2, the other writer 3
        ctx.update_context("r-landed-2", expected_version=1, summary="mine")

    assert caught.value.details["current_version"] == 3
    assert [status for *_, status in proxy.seen] == [502, 412, 200]


def test_a_retried_change_of_locks_whose_first_try_landed_answers_the_locks(connect, form):
    make_session("r-locks", content={"goal": "Lisbon in May"})
    proxy = (_SyncLoses if form == "sync" else _AsyncLoses)()
    ctx = connect("read", "write", transport=proxy)

    # Its precondition (no locks) no longer holds on the retry, as its own first try locked the goal.
    locked = ctx.set_locks("r-locks", ["goal"], reason="the customer's words", expected_locks=[])

    assert [lock["field"] for lock in locked["locks"]] == ["goal"]
    assert [status for *_, status in proxy.seen] == [502, 200]
    with pytest.raises(ConflictError):  # a change that would undo something is refused as ever
        ctx.set_locks("r-locks", [], reason="back to the model", expected_locks=[])


@pytest.mark.parametrize("call", ["reset_context", "revert_context", "delete_session"])
def test_a_retried_reset_revert_or_delete_whose_first_try_landed_answers_its_result(connect, form, call):
    session = make_session("r-other", content={"summary": "one"})
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "two"}, source="api",
                             actor=Actor.system("agent"))
    proxy = (_SyncLoses if form == "sync" else _AsyncLoses)()
    proxy.methods = ("POST", "DELETE")
    ctx = connect("read", "write", transport=proxy)

    if call == "reset_context":
        answer = ctx.reset_context("r-other", "start over", expected_version=2)
        assert (answer["version"], answer["summary"]) == (3, "")
        assert proxy.seen == [("POST", "reset", 502), ("POST", "reset", 412), ("GET", "context", 200)]
    elif call == "revert_context":
        answer = ctx.revert_context("r-other", 1, expected_version=2, reason=" the first was right ")
        assert (answer["version"], answer["summary"]) == (3, "one")
        assert proxy.seen == [("POST", "revert", 502), ("POST", "revert", 412), ("GET", "revisions", 200),
                              ("GET", "context", 200)]
    else:
        assert ctx.delete_session("r-other") is None
        assert proxy.seen == [("DELETE", "r-other", 502), ("DELETE", "r-other", 404)]
    assert SessionContext.objects.filter(session_id="r-other").count() == (call != "delete_session")


def test_a_retried_revert_is_a_conflict_when_another_write_made_the_next_version(connect, form):
    session = make_session("r-other-2", content={"summary": "one"})
    services.snapshot_update(session=session, expected_version=1, changes={"summary": "two"}, source="api",
                             actor=Actor.system("agent"))

    def someone_else_reverts_too():  # a revert to the same version, with its own reason, lands first
        current = SessionContext.objects.get(pk=session.pk)
        services.snapshot_revert(session=current, to_version=1, expected_version=2, reason="theirs",
                                 actor=Actor.system("someone else"), source="api")

    class First(_SyncLoses if form == "sync" else _AsyncLoses):
        methods = ("POST",)

        def handle_request(self, request):  # the first try never reaches the server: the other write does
            if not self.seen:
                self.meanwhile()
                self.seen.append((request.method, "revert", 502))
                return httpx.Response(502, headers={"Retry-After": "0"})
            return super().handle_request(request)

        async def handle_async_request(self, request):
            if not self.seen:
                self.meanwhile()
                self.seen.append((request.method, "revert", 502))
                return httpx.Response(502, headers={"Retry-After": "0"})
            return await super().handle_async_request(request)

    proxy = First(lambda: in_another_connection(someone_else_reverts_too))
    ctx = connect("read", "write", transport=proxy)
    with pytest.raises(VersionConflictError):
        ctx.revert_context("r-other-2", 1, expected_version=2, reason="mine")



def test_a_delete_throttled_first_and_then_not_found_is_not_found(connect, throttle, recording):
    # A 429 says the first try did nothing: the 404 that follows is the id's own (a typo), not a deletion.
    throttle("1/s")
    make_session("r-kept")
    ctx = connect("read", "write", transport=recording)
    ctx.get_context("r-kept")
    with pytest.raises(NotFoundError):
        ctx.delete_session("r-typo")  # 429, Retry-After: 1, then 404
    assert [status for *_, status in recording.seen][-2:] == [429, 404]
