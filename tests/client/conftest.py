"""The client package (clients/python) against a live server, in both forms: each test that takes `ctx` runs once
with SessionCtxClient and once with AsyncSessionCtxClient, whose calls run to completion on one event loop."""

from __future__ import annotations

import asyncio
import inspect

import httpx2 as httpx
import pytest
from django.core.cache import cache
from sessionctx_client import AsyncSessionCtxClient, SessionCtxClient

from tests.factories import make_api_key


def pytest_configure(config):
    config.addinivalue_line("markers", "install: installs the client package into a fresh venv (uv, the package "
                                       "registry and uv's cache)")


class Awaited:
    """An AsyncSessionCtxClient with SessionCtxClient's calling convention, so one test body drives both."""

    def __init__(self, client: AsyncSessionCtxClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop

    def __getattr__(self, name: str):
        attribute = getattr(self.client, name)
        if inspect.isasyncgenfunction(attribute):
            def iterate(*args, **kwargs):
                events = attribute(*args, **kwargs)
                while True:
                    try:
                        yield self.loop.run_until_complete(anext(events))
                    except StopAsyncIteration:
                        return
            return iterate
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self.loop.run_until_complete(attribute(*args, **kwargs))
        return attribute


def open_client(form: str, base_url: str, api_key: str, **options):
    """(client with the blocking calling convention, close function) for "sync" or "async"."""
    if form == "sync":
        client = SessionCtxClient(base_url, api_key, **options)
        return client, client.close
    loop = asyncio.new_event_loop()
    client = AsyncSessionCtxClient(base_url, api_key, **options)

    def close():
        loop.run_until_complete(client.aclose())
        loop.close()

    return Awaited(client, loop), close


@pytest.fixture(params=["sync", "async"])
def form(request) -> str:
    return request.param


@pytest.fixture
def connect(live_server, form):
    """connect(*scopes, **client options): a client of the given form with a new key of those scopes."""
    opened = []

    def connect(*scopes: str, base_url: str | None = None, api_key: str | None = None, **options):
        if api_key is None:
            _, api_key = make_api_key(*(scopes or ("read", "write")), name="client")
        client, close = open_client(form, base_url or live_server.url, api_key, **options)
        opened.append(close)
        return client

    yield connect
    for close in opened:
        close()


@pytest.fixture
def ctx(connect):
    return connect("read", "write")


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()
    yield
    cache.clear()


class Recording:
    """Records what the client sent and what the live server answered, over a real transport."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None, int]] = []

    def note(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        self.seen.append((request.method, request.url.path.rsplit("/", 1)[-1], request.headers.get("If-None-Match"),
                          response.status_code))
        return response


class SyncRecording(Recording, httpx.HTTPTransport):
    def __init__(self) -> None:
        Recording.__init__(self)
        httpx.HTTPTransport.__init__(self)

    def handle_request(self, request):
        return self.note(request, super().handle_request(request))


class AsyncRecording(Recording, httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        Recording.__init__(self)
        httpx.AsyncHTTPTransport.__init__(self)

    async def handle_async_request(self, request):
        return self.note(request, await super().handle_async_request(request))


@pytest.fixture
def recording(form):
    return SyncRecording() if form == "sync" else AsyncRecording()
