"""API key authentication, scope permissions and per-key throttling for the REST API."""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from redis.exceptions import RedisError
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.settings import api_settings

from . import readcache, selectors
from .models import ApiKey
from .services import api_key_hash

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# last_used_at is a hint for admins, not an audit: write it at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Query parameters people try for keys. Keys in URLs end up in logs and browser history, so a
# request carrying one is refused outright rather than silently treated as anonymous.
KEY_QUERY_PARAMS = ("key", "api_key", "apikey", "token", "access_token", "bearer")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`; keys are never accepted in the query string."""

    keyword = "Bearer"

    def authenticate(self, request):
        if any(name in request.query_params for name in KEY_QUERY_PARAMS):
            raise exceptions.AuthenticationFailed(
                "API keys are not accepted in the URL; send 'Authorization: Bearer <key>'."
            )
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <key>'.")
        try:
            raw_key = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        # Looked up on every request, so a revoked key stops working at once.
        key = selectors.api_key_by_hash(api_key_hash(raw_key))
        if key is None or not key.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return (None, key)

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class HasScope(permissions.BasePermission):
    """Reads need the `read` scope, everything else `write`."""

    message = "This API key does not have the scope this request needs."

    def has_permission(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key: Authorization: Bearer <key>.")
        return key.has_scope(required_scope(request, view))


def required_scope(request, view) -> str:
    return getattr(view, "required_scope", None) or ("read" if request.method in SAFE_METHODS else "write")


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """Requests per API key (rate in settings: API_THROTTLE_RATE); anonymous calls by client IP.

    The client IP comes from X-Forwarded-For only behind NUM_PROXIES trusted proxies.
    """

    scope = "api_key"

    def get_rate(self):
        # Read on each request (not at import, as DRF does) so a settings change takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        key = request.auth
        ident = key_ident(key.key_hash) if isinstance(key, ApiKey) else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        # One counter per key and window (O(1) per request). DRF's default keeps the time of every
        # request in the window and loads and stores that list on each request: O(rate), measured
        # by bench/read_path.py as the largest cost of a context read at the default 6000/min.
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.key += ":n"  # not the key of DRF's list, which incr cannot count on
        self.now = self.timer()
        backend = caches[DEFAULT_CACHE_ALIAS]
        self.redis = readcache.redis_client(backend) if isinstance(backend, RedisCache) else None
        if self.redis is not None:
            try:
                count = self._count_in_redis(backend.make_and_validate_key(self.key))
            except RedisError as exc:
                # Rate limiting protects the service; refusing every request while Redis is away
                # would be the outage it protects against. Reads and writes go on, unthrottled.
                logger.warning("throttle not counted, the cache is unreachable: %s", exc)
                return True
        else:
            count = self._count_in_cache()
        if count > self.num_requests:
            return self.throttle_failure()
        return True

    def _count_in_redis(self, key: str) -> int:
        # One round trip: the window starts (with its expiry) at its first request, so no boundary
        # splits a client's burst; MULTI keeps a counter from ever lacking its expiry.
        self.redis_key = key
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, 0, ex=self.duration, nx=True)
        pipe.incr(key)
        return pipe.execute()[1]

    def _count_in_cache(self) -> int:
        if self.cache.add(self.key, 1, self.duration):
            self.cache.set(f"{self.key}:start", self.now, self.duration)
            return 1
        try:
            return self.cache.incr(self.key)
        except ValueError:  # the window ended between add and incr
            self.cache.add(self.key, 1, self.duration)
            return 1

    def wait(self):
        if self.redis is not None:
            left_ms = self.redis.pttl(self.redis_key)
            return self.duration if left_ms < 0 else max(1.0, left_ms / 1000)
        started = self.cache.get(f"{self.key}:start")
        if started is None:
            return self.duration
        return max(1.0, self.duration - (self.now - started))


def key_ident(key_hash: str) -> str:
    # By hash, not id: the cached read path (api.cached_read) counts before it knows the key's id.
    return f"key-{key_hash[:32]}"


def throttle_for_key(key_hash: str) -> tuple[str, int, int] | None:
    """The Redis counter name, limit and window of a key's throttle, as ApiKeyRateThrottle counts it; None if off."""
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(ApiKeyRateThrottle.scope)
    if rate is None:
        return None
    num_requests, duration = _parse_rate(rate)
    name = ApiKeyRateThrottle.cache_format % {"scope": ApiKeyRateThrottle.scope, "ident": key_ident(key_hash)}
    return caches[DEFAULT_CACHE_ALIAS].make_key(name + ":n"), num_requests, duration


@functools.lru_cache(maxsize=8)
def _parse_rate(rate: str) -> tuple[int, int]:
    return throttling.SimpleRateThrottle.parse_rate(None, rate)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the Bearer API key in the OpenAPI schema."""

    target_class = "contexts.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sck_<prefix>_<secret>",
            "description": "An API key sent as `Authorization: Bearer <key>`. Reads need the `read` scope, "
                           "writes the `write` scope. Create one with `python manage.py create_api_key NAME "
                           "--scopes read,write`.",
        }
