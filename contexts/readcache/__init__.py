"""A shared cache (Redis) in front of the API's hottest reads: the context answers and the API keys behind them.

Agents read the context before every model call; from here that costs Redis round trips instead of
PostgreSQL queries, and a write made by any process (a worker, a command, another web machine) is seen by the
next read. The per-request counters every process shares (the API throttle, keys' last-used markers) live
here too, on the same client: a cached read makes three round trips (key with marker, throttle, answer), each a
single command or script. Coherence, the rules every change follows:

- **Snapshots.** Every service that changes a session row calls `context_changed`, which deletes the cached
  answer (and any fill in progress) once the transaction commits, before the writer's request returns. A read
  that misses takes a fill lease (SET NX), reads the database, and stores what it read only if its lease is
  still there (one Lua check-and-set): a read that saw the row before a write's commit therefore cannot store
  it after the write's delete. Entries expire after SESSIONCTX_READ_CACHE_TTL seconds (each up to TTL_JITTER
  sooner, so entries filled together do not all refill together), which bounds staleness in the one case the
  delete cannot run: a process killed between its commit and the delete, or Redis unreachable at that moment.
- **API keys.** A fill never overwrites (SET NX). Revoking writes a tombstone first and refuses to go on if it
  cannot, then changes the database: a request that read the key as active just before the revocation cannot
  cache it afterwards, so a revoked key is refused at once.
  A change made behind the service's back (an SQL UPDATE, a deleted row) writes no tombstone: an active key's
  entry expires after SESSIONCTX_API_KEY_CACHE_TTL seconds (60), which bounds how long such a key keeps working.

Every call here gives up quickly when Redis does not answer (CACHE_SOCKET_TIMEOUT) and the caller falls back
to the database; after a failure the process leaves Redis alone for a second (client.BACK_OFF_SECONDS), except
for the deletes and tombstones that coherence needs. The cache makes reads cheaper, never makes them fail.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from redis.exceptions import RedisError

from ..exceptions import ApplicationError
from ..infra.instruments import read_cache_lookups
from .client import available, client, failed, redis_url, script

logger = logging.getLogger(__name__)

TOMBSTONE_TTL = 3600  # outlives any fill that read the key before it was revoked
LEASE_MS = 5000  # a fill that takes longer just does not store its answer
TTL_JITTER = 0.2
TOMBSTONE = b"-"
REVOKED = object()  # api_key_get: the key was revoked

# An API request's key check: the key's entry and, for an active key, its last-used marker (SET NX), in one round
# trip. ARGV: the tombstone, the marker's seconds.
_KEY_LOOKUP = """
local entry = redis.call('GET', KEYS[1])
if not entry or entry == ARGV[1] then return {entry} end
if redis.call('SET', KEYS[2], '1', 'EX', ARGV[2], 'NX') then return {entry, 1} end
return {entry, 0}
"""

# A fixed window that starts at its first count, in one round trip: the count so far and the milliseconds left.
# A counter found without an expiry (none should be) gets one, so nothing is counted against for good.
_WINDOW_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); left = ARGV[1] * 1000 end
return {n, left}
"""

# A window's count so far and the milliseconds left, without counting: {0, -2} when no window is open.
_WINDOW_PEEK = """
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('PTTL', KEYS[1])}
"""

# Store the fill only if the lease taken before reading the database is still there: a write's delete (after
# its commit) removes the lease, so an answer read before that commit is dropped.
_FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'c', ARGV[4], 'p', ARGV[5], 'i', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Entry:
    """A session's cached answers: its version, the JSON of GET .../context, the prompt block, and the session
    row's primary key (the ETag's session tag is computed from it when answering, not stored: a tag signed with
    an earlier SECRET_KEY would be refused by every write)."""

    version: int
    context_json: bytes
    prompt: str
    session_pk: int


def enabled() -> bool:
    return settings.SESSIONCTX_READ_CACHE and redis_url() is not None


def _name(kind: str, ident: str) -> str:
    return f"sessionctx:{kind}:{ident}"


# --- context answers ------------------------------------------------------------------------------------


def _session_key(project_id: int, session_id: str) -> str:
    # The project is part of every session entry's name, so a cached answer never crosses projects.
    return f"{project_id}:{session_id}"


def lookup(project_id: int, session_id: str) -> Entry | None:
    """The session's cached answers; None when not cached or Redis does not answer."""
    if not enabled():
        return None
    if not available():
        read_cache_lookups.labels("context", "unavailable").inc()
        return None
    try:
        version, body, prompt, session_pk = client().hmget(_name("c", _session_key(project_id, session_id)),
                                                           ["v", "c", "p", "i"])
    except RedisError as exc:
        failed()
        read_cache_lookups.labels("context", "unavailable").inc()
        logger.warning("read cache: lookup of %s failed, reading the database: %s", session_id, exc)
        return None
    # An entry without the session row's key was stored by an older release: a miss, refilled with one.
    missed = version is None or session_pk is None
    read_cache_lookups.labels("context", "miss" if missed else "hit").inc()
    if missed:
        return None
    return Entry(int(version), body, prompt.decode(), int(session_pk))


def fill(project_id: int, session_id: str, read: Callable[[], Entry]) -> Entry:
    """`read()` (the database), cached if no write to the session committed meanwhile."""
    if not enabled() or not available():
        return read()
    key = _session_key(project_id, session_id)
    lease_name, token = _name("l", key), secrets.token_hex(8)
    try:
        leased = bool(client().set(lease_name, token, px=LEASE_MS, nx=True))
    except RedisError:
        failed()
        leased = False
    entry = read()  # after taking the lease: see _FILL
    if leased:
        ttl_ms = round(settings.SESSIONCTX_READ_CACHE_TTL * 1000 * (1 - TTL_JITTER * random.random()))
        try:
            client().eval(_FILL, 2, _name("c", key), lease_name, token, ttl_ms, entry.version,
                          entry.context_json, entry.prompt, entry.session_pk)
        except RedisError as exc:
            failed()
            logger.warning("read cache: could not store %s: %s", session_id, exc)
    return entry


def _forget(key: str) -> None:
    try:
        client().delete(_name("c", key), _name("l", key))
    except RedisError as exc:
        failed()
        # The entry expires after SESSIONCTX_READ_CACHE_TTL; until then reads may be that old.
        logger.warning("read cache: could not drop %s after a change: %s", key, exc)


def context_changed(project_id: int, session_id: str) -> None:
    """Called by every service that changes a session row: drop its cached answers once the change commits."""
    if enabled():
        transaction.on_commit(partial(_forget, _session_key(project_id, session_id)))


# --- API keys -------------------------------------------------------------------------------------------


def api_key_get(key_hash: str, *, mark_used_for: int) -> tuple[dict | object | None, bool | None]:
    """A key's cached columns, REVOKED, or None (not cached, or Redis does not answer); and, for an active key
    found here, whether this is its first use in `mark_used_for` seconds (api_key_mark_used, same round trip)."""
    if not enabled():
        return None, None
    if not available():
        read_cache_lookups.labels("api_key", "unavailable").inc()
        return None, None
    try:
        found = script(_KEY_LOOKUP)(keys=[_name("k", key_hash), _name("u", key_hash)],
                                    args=[TOMBSTONE, mark_used_for])
    except RedisError as exc:
        failed()
        read_cache_lookups.labels("api_key", "unavailable").inc()
        logger.warning("read cache: key lookup failed, reading the database: %s", exc)
        return None, None
    raw = found[0]
    read_cache_lookups.labels("api_key", "miss" if raw is None else "hit").inc()
    if raw is None:
        return None, None
    if raw == TOMBSTONE:
        return REVOKED, None
    return json.loads(raw), bool(found[1])


def api_key_mark_used(key_hash: str, seconds: int) -> bool | None:
    """Mark the key used for `seconds`: True if it was not marked yet, None if the shared cache is unreachable."""
    name = _name("u", key_hash)
    if redis_url() is None:  # the in-process cache of a single-process setup
        return cache.add(name, 1, seconds)
    if not available():
        return None
    try:
        return bool(client().set(name, 1, ex=seconds, nx=True))
    except RedisError as exc:
        failed()
        logger.warning("last-used marker not set, the cache is unreachable: %s", exc)
        return None


def api_key_store(key_hash: str, columns: dict) -> None:
    """Cache an active key's columns, unless an entry (or a revocation's tombstone) is there already."""
    if not enabled() or not available():
        return
    try:
        client().set(_name("k", key_hash), json.dumps(columns), ex=settings.SESSIONCTX_API_KEY_CACHE_TTL, nx=True)
    except RedisError as exc:
        failed()
        logger.warning("read cache: could not store an API key: %s", exc)


def api_key_forget(key_hash: str) -> None:
    """Tombstone a key before its revocation commits; refuses (503) if the cache cannot be told."""
    if not enabled():
        return
    try:
        client().set(_name("k", key_hash), TOMBSTONE, ex=TOMBSTONE_TTL)
    except RedisError as exc:
        failed()
        logger.warning("read cache: could not tombstone an API key: %s", exc)
        raise ApplicationError("The cache is unreachable, so the key cannot be revoked safely; nothing "
                               "changed. Retry shortly.", code="unavailable", status=503) from exc


# --- counters shared by every process (the API throttle) ---------------------------------------------------


def window_count(name: str, seconds: int) -> tuple[int, float] | None:
    """Count one more in `name`'s window of `seconds` (started by its first count): the count and the seconds
    left in the window, or None when the shared cache is unreachable."""
    if redis_url() is None:  # the in-process cache of a single-process setup
        return _window_count_in_process(name, seconds)
    if not available():
        return None
    try:
        count, left_ms = script(_WINDOW_COUNT)(keys=[_name("t", name)], args=[seconds])
    except RedisError as exc:
        failed()
        logger.warning("counter %s not counted, the cache is unreachable: %s", name, exc)
        return None
    return int(count), int(left_ms) / 1000


def window_peek(name: str, seconds: int) -> tuple[int, float] | None:
    """`name`'s count in its open window of `seconds` and the seconds left, without counting (0 when no window is
    open); None when the shared cache is unreachable."""
    if redis_url() is None:
        count = cache.get(name) or 0
        started = cache.get(f"{name}:start")
        return count, float(seconds) if started is None else seconds - (time.time() - started)
    if not available():
        return None
    try:
        count, left_ms = script(_WINDOW_PEEK)(keys=[_name("t", name)])
    except RedisError as exc:
        failed()
        logger.warning("counter %s not read, the cache is unreachable: %s", name, exc)
        return None
    return int(count), max(int(left_ms), 0) / 1000


def _window_count_in_process(name: str, seconds: int) -> tuple[int, float]:
    started_name = f"{name}:start"
    if cache.add(name, 1, seconds):
        cache.set(started_name, time.time(), seconds)
        return 1, float(seconds)
    try:
        count = cache.incr(name)
    except ValueError:  # the window ended between add and incr
        cache.set(name, 1, seconds)
        cache.set(started_name, time.time(), seconds)
        return 1, float(seconds)
    started = cache.get(started_name)
    return count, float(seconds) if started is None else seconds - (time.time() - started)
