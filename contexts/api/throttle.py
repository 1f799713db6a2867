"""Requests per API key, counted in the shared cache (Redis in production) so every process shares the count."""

from __future__ import annotations

from rest_framework import exceptions, throttling
from rest_framework.settings import api_settings

from .. import readcache
from ..models import ApiKey


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """Requests per API key (API_THROTTLE_RATE); anonymous calls by client IP.

    One counter per key and window, O(1) a request and one round trip to Redis (readcache.window_count): DRF's
    default keeps the time of every request in the window and loads and stores that list on each request. The
    window starts at a key's first request, so no boundary splits a client's burst. The client IP comes from
    X-Forwarded-For only behind NUM_PROXIES proxies.
    """

    scope = "api_key"

    def get_rate(self):
        # Read on each request (not at import, as DRF does) so a settings change takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        key = request.auth
        ident = f"key-{key.key_hash[:32]}" if isinstance(key, ApiKey) else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        counted = readcache.window_count(self.key, self.duration)
        if counted is None:
            # The throttle protects the service; refusing every request while the cache is away would be the
            # outage it protects against. Requests go on, unthrottled.
            return True
        count, self.seconds_left = counted
        return count <= self.num_requests or self.throttle_failure()

    def wait(self):
        return max(1.0, self.seconds_left)


class KeyGuessThrottle(throttling.SimpleRateThrottle):
    """Unknown API keys per client address (API_KEY_FAILURE_RATE, "60/min").

    A refused key is a 401 before any throttle runs, so without this an address could try keys, and cost a
    database query each, as fast as it can send them. Past the rate, a request from that address whose key is not
    in the read cache (every guess) is refused (429) until the window ends, before the database is asked: a
    guess that happens to be right is refused too, so guessing gains nothing, and keys in use (cached) cost no
    more round trip than before. Counted in the shared cache, as ApiKeyRateThrottle.
    """

    scope = "api_key_failures"

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def check(self, request) -> None:
        """Before a key is looked up in the database: 429 if this address has used up its failures."""
        if self.rate is None:
            return
        counted = readcache.window_peek(self.get_cache_key(request), self.duration)
        if counted is not None and counted[0] >= self.num_requests:
            raise self._refusal(counted[1])

    def failed(self, request) -> None:
        """After a key was refused: count it."""
        if self.rate is not None:
            readcache.window_count(self.get_cache_key(request), self.duration)

    def _refusal(self, seconds_left: float) -> exceptions.Throttled:
        return exceptions.Throttled(
            wait=max(1.0, seconds_left),
            detail=f"Too many refused API keys from this address ({self.num_requests} in {self.duration} s); "
                   "keys not in use are refused until the window ends.")
