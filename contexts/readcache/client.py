"""The read cache's Redis client: redis-py, built from the default cache's LOCATION (CACHE_URL), one per process."""

from __future__ import annotations

import threading
import time

import redis
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS
from redis.commands.core import Script

REDIS_BACKEND = "django.core.cache.backends.redis.RedisCache"

# After Redis failed to answer, this process leaves it alone this long: a hung Redis then costs one request a
# timeout now and then, not every call of every request.
BACK_OFF_SECONDS = 1.0

_lock = threading.Lock()
_down_until: dict[str | None, float] = {}  # per Redis URL
_clients: dict[tuple, redis.Redis] = {}
_scripts: dict[tuple, Script] = {}


def redis_url() -> str | None:
    """The Redis URL of the default cache, or None when the cache is not Redis."""
    config = settings.CACHES.get(DEFAULT_CACHE_ALIAS, {})
    if config.get("BACKEND") != REDIS_BACKEND:
        return None
    location = config.get("LOCATION")
    return location[0] if isinstance(location, list | tuple) else location


def client() -> redis.Redis:
    """A shared client (a thread-safe connection pool) for the current cache settings.

    Short timeouts: a Redis that does not answer must cost a read a fraction of a second, after which it
    falls back to the database, not hang the request.
    """
    key = _settings_key()
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = redis.Redis.from_url(key[0], socket_timeout=settings.CACHE_SOCKET_TIMEOUT,
                                         socket_connect_timeout=settings.CACHE_CONNECT_TIMEOUT,
                                         health_check_interval=30)
            _clients[key] = found
        return found


def script(source: str) -> Script:
    """A Lua script registered with client(): called by its SHA (EVALSHA), loaded into Redis on first use."""
    key = (*_settings_key(), source)
    found = _scripts.get(key)
    if found is None:
        found = _scripts[key] = client().register_script(source)
    return found


def _settings_key() -> tuple:
    return (redis_url(), settings.CACHE_SOCKET_TIMEOUT, settings.CACHE_CONNECT_TIMEOUT)


def available() -> bool:
    """False for a while after a call to Redis failed (see BACK_OFF_SECONDS)."""
    return time.monotonic() >= _down_until.get(redis_url(), 0.0)


def failed() -> None:
    """A call to Redis timed out or was refused: back off."""
    _down_until[redis_url()] = time.monotonic() + BACK_OFF_SECONDS
