"""A shared cache in front of the API's hottest reads: the context answers and the API keys behind them.

Agents read the context before every model call. From the database, each read costs two PostgreSQL
round trips (the key, the session) and DRF's request handling; from here it is one Redis round trip,
which also counts the throttle (bench/read_path.py, docs/benchmarks.md).

Only a shared cache is used (Django's RedisCache): with a per-process cache, a write made by another
process (a worker, a management command, another web machine) could not reach it.

Coherence, the rules every change follows:
- **Snapshots.** Every service that changes a session row calls `context_changed`, which deletes the
  cached answer (and any fill in progress) once the transaction commits, before the writer's request
  returns. A read that misses takes a fill lease (SET NX), reads the database, and stores what it read
  only if its lease is still there (one Lua check-and-set): a read that saw the row before a write's
  commit therefore cannot store it after the write's delete. Entries expire after
  SESSIONCTX_READ_CACHE_TTL seconds, which bounds staleness in the one case the delete cannot run: a
  process killed between its commit and the delete, or Redis unreachable at that moment.
- **API keys.** A fill never overwrites (SET NX). Revoking writes a tombstone first and refuses to go on
  if it cannot, then changes the database: a request that read the key as active just before the
  revocation cannot cache it afterwards, so a revoked key is refused at once.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from redis.exceptions import NoScriptError, RedisError

from .exceptions import ApplicationError

logger = logging.getLogger(__name__)

# What a cached context entry holds: its version, the JSON answer of GET .../context, the prompt text.
VERSION, CONTEXT_JSON, PROMPT = "v", "c", "p"
KEY_TTL = 300  # an active key's entry; revocation does not wait for it (tombstone)
TOMBSTONE_TTL = 3600  # outlives any fill that read the key before it was revoked
LAST_USED_TTL = 60  # ApiKey.last_used_at is written at most once a minute per key
LEASE_MS = 5000  # a fill that takes longer just does not store its answer
TOMBSTONE = b"-"

# Store the fill only if the lease taken before reading the database is still there: a write's
# delete (after its commit) removes the lease, so an answer read before that commit is dropped.
_FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'c', ARGV[4], 'p', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def _backend() -> RedisCache | None:
    backend = caches[DEFAULT_CACHE_ALIAS]
    return backend if isinstance(backend, RedisCache) else None


def enabled() -> bool:
    return settings.SESSIONCTX_READ_CACHE and _backend() is not None


def redis_client(backend: RedisCache):
    """A redis client kept on the cache's connection pools: Django's RedisCache builds a new one per call."""
    pools = backend._cache  # the cache's RedisCacheClient (per thread, like the cache object)
    client = getattr(pools, "sessionctx_client", None)
    if client is None:
        client = pools.sessionctx_client = pools.get_client(write=True)
    return client


def _names(backend: RedisCache, kind: str, ident: str) -> str:
    return backend.make_key(f"sc:{kind}:{ident}")


# One round trip, atomic like MULTI (the throttle counter never lacks its expiry): the key's entry,
# the session's version and answer, the once-a-minute last-used marker, the throttle counter; on a miss
# by a cached key, the fill lease too (see context_fill), which saves a miss one more round trip.
_LOOKUP = """
local key = redis.call('GET', KEYS[1])
local ctx = redis.call('HMGET', KEYS[2], 'v', ARGV[1])
if ctx[1] and ctx[1] == ARGV[4] then ctx[2] = '' end  -- the client holds this version: a 304 needs no body
local first_use = redis.call('SET', KEYS[3], 1, 'EX', ARGV[2], 'NX') and 1 or 0
local leased = 0
if not ctx[1] and key and key ~= '-' then
  leased = redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6], 'NX') and 1 or 0
end
local count = -1
if KEYS[5] then
  redis.call('SET', KEYS[5], 0, 'EX', ARGV[3], 'NX')
  count = redis.call('INCR', KEYS[5])
end
return {key or '', ctx[1] or '', ctx[2] or '', first_use, count, leased}
"""


@dataclass
class Lookup:
    """What one round trip found: the key's entry, the context entry, the throttle count."""

    key_entry: tuple[int, frozenset[str]] | None  # (key id, scopes); None: not cached
    key_revoked: bool
    version: int | None  # None: the context is not cached
    body: bytes | None
    throttle_count: int | None
    first_use_this_minute: bool
    lease: str | None  # on a miss: the fill lease this lookup took (context_fill's token)


def lookup(key_hash: str, session_id: str, field: str, *, throttle_key: str | None,
           throttle_seconds: int, client_version: int | None = None) -> Lookup:
    """One Redis round trip: the key's entry, the session's cached `field` (unless it is at `client_version`),
    the throttle counter."""
    backend = _backend()
    client = redis_client(backend)
    keys = [_names(backend, "k", key_hash), _names(backend, "c", session_id), _names(backend, "u", key_hash),
            _names(backend, "l", session_id)]
    if throttle_key is not None:
        keys.append(throttle_key)
    token = secrets.token_hex(8)
    raw_key, version, body, first_use, count, leased = _evalsha_lookup(
        client, keys, [field, LAST_USED_TTL, throttle_seconds, "" if client_version is None else client_version,
                       token, LEASE_MS])
    key_entry = None
    if raw_key and raw_key != TOMBSTONE:
        key_id, _, scopes = raw_key.decode().partition("|")
        key_entry = (int(key_id), frozenset(scopes.split(",")))
    return Lookup(
        key_entry=key_entry,
        key_revoked=raw_key == TOMBSTONE,
        # The three fields are written together: a version means the entry is there (a prompt may be empty).
        version=int(version) if version else None,
        body=body if version else None,
        throttle_count=count if throttle_key is not None else None,
        first_use_this_minute=first_use == 1,
        lease=token if leased == 1 else None,
    )


def _evalsha_lookup(client, keys: list[str], args: list) -> list:
    sha = getattr(client, "sessionctx_lookup_sha", None)
    if sha is not None:
        try:
            return client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted and forgot its scripts
            pass
    sha = client.sessionctx_lookup_sha = client.script_load(_LOOKUP)
    return client.evalsha(sha, len(keys), *keys, *args)


# --- API keys -------------------------------------------------------------------------------------


def api_key_store(key_hash: str, key_id: int, scopes: list[str]) -> None:
    """Cache an active key, unless an entry (or a revocation's tombstone) is there already."""
    backend = _backend()
    try:
        redis_client(backend).set(_names(backend, "k", key_hash), f"{key_id}|{','.join(scopes)}",
                                  ex=KEY_TTL, nx=True)
    except RedisError as exc:
        logger.warning("read cache: could not store an API key: %s", exc)


def api_key_forget(key_hash: str) -> None:
    """Tombstone a key before its revocation commits; refuses (503) if the cache cannot be told."""
    backend = _backend()
    if backend is None:
        return
    try:
        redis_client(backend).set(_names(backend, "k", key_hash), TOMBSTONE, ex=TOMBSTONE_TTL)
    except RedisError as exc:
        logger.warning("read cache: could not tombstone an API key: %s", exc)
        raise ApplicationError("The cache is unreachable, so the key cannot be revoked safely; nothing "
                               "changed. Retry shortly.", code="service_unavailable", status=503) from exc


# --- context answers ------------------------------------------------------------------------------


def context_fill(session_id: str, read, *, lease: str | None = None) -> dict[str, bytes | str | int]:
    """Read a context entry with `read()` (the database) and cache it if no write happened meanwhile.

    `lease`: the token of a fill lease already taken (by `lookup`); otherwise one is taken here.
    """
    backend = _backend()
    client = redis_client(backend)
    entry_name, lease_name = _names(backend, "c", session_id), _names(backend, "l", session_id)
    token, leased = lease, lease is not None
    if not leased:
        token = secrets.token_hex(8)
        try:
            leased = client.set(lease_name, token, px=LEASE_MS, nx=True)
        except RedisError:
            leased = False
    entry = read()  # after taking the lease: see _FILL
    if leased:
        try:
            client.eval(_FILL, 2, entry_name, lease_name, token, settings.SESSIONCTX_READ_CACHE_TTL,
                        entry[VERSION], entry[CONTEXT_JSON], entry[PROMPT])
        except RedisError as exc:
            logger.warning("read cache: could not store %s: %s", session_id, exc)
    return entry


def context_forget(session_id: str) -> None:
    backend = _backend()
    if backend is None:
        return
    try:
        redis_client(backend).delete(_names(backend, "c", session_id), _names(backend, "l", session_id))
    except RedisError as exc:
        # The entry expires after SESSIONCTX_READ_CACHE_TTL; until then reads may be that old.
        logger.warning("read cache: could not drop %s after a change: %s", session_id, exc)


def context_changed(session_id: str) -> None:
    """Called by every service that changes a session row: drop its cached answers once the change commits."""
    if enabled():
        transaction.on_commit(partial(context_forget, session_id))
