"""The shared cache (CACHE_URL): throttle counters and the read cache."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from .env import env, env_float

__all__ = [
    "CACHE_URL", "CACHE_SOCKET_TIMEOUT", "CACHE_CONNECT_TIMEOUT", "CACHES",
]

# Throttle counters and the read cache live here: give every web and worker process one shared cache (Redis) in
# production. A Redis that does not answer within the timeouts costs a request that long, then it goes on
# without the cache (reads from the database, throttle not counted).
CACHE_URL = env("CACHE_URL")
# Any other URL passed start-up and made every API request fail (redis-py refuses it at the first call).
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    # Not echoed: it may hold a password.
    raise ImproperlyConfigured("CACHE_URL must be a Redis URL: redis://host:6379/1, rediss://... or unix://...")
# redis-py reads a database number it cannot parse (redis://host/abc) as database 0: another installation's, perhaps.
if CACHE_URL.startswith(("redis://", "rediss://")) and not re.fullmatch(r"/?[0-9]*", urlsplit(CACHE_URL).path):
    raise ImproperlyConfigured("CACHE_URL: the path must be a database number (redis://host:6379/1)")
CACHE_SOCKET_TIMEOUT = env_float("CACHE_SOCKET_TIMEOUT", 0.5, positive=True)
CACHE_CONNECT_TIMEOUT = env_float("CACHE_CONNECT_TIMEOUT", 0.5, positive=True)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
         "OPTIONS": {"socket_timeout": CACHE_SOCKET_TIMEOUT, "socket_connect_timeout": CACHE_CONNECT_TIMEOUT}}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
