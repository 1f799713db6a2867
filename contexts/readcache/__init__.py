"""A shared cache (Redis) in front of the API's hottest reads: the context answers and the API keys behind them.

Agents read the context before every model call; from here that costs Redis round trips instead of
PostgreSQL queries, and a write made by any process (a worker, a command, another web machine) is seen by the
next read. Coherence, the rules every change follows:

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from ..exceptions import ApplicationError
from .client import available, client, failed, redis_url

logger = logging.getLogger(__name__)

TOMBSTONE_TTL = 3600  # outlives any fill that read the key before it was revoked
LEASE_MS = 5000  # a fill that takes longer just does not store its answer
TTL_JITTER = 0.2
TOMBSTONE = b"-"
REVOKED = object()  # api_key_get: the key was revoked

# Store the fill only if the lease taken before reading the database is still there: a write's delete (after
# its commit) removes the lease, so an answer read before that commit is dropped.
_FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'c', ARGV[4], 'p', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Entry:
    """A session's cached answers: its version, the JSON of GET .../context, the prompt block."""

    version: int
    context_json: bytes
    prompt: str


def enabled() -> bool:
    return settings.SESSIONCTX_READ_CACHE and redis_url() is not None


def shared_cache_usable() -> bool:
    """Whether the default cache (throttle counters, last-used markers) is worth asking now: not while a Redis
    behind it is backing off after a failure."""
    return redis_url() is None or available()


def shared_cache_failed() -> None:
    """A call to the default cache failed; when that cache is Redis, back off from it."""
    if redis_url() is not None:
        failed()


def _name(kind: str, ident: str) -> str:
    return f"sessionctx:{kind}:{ident}"


# --- context answers ------------------------------------------------------------------------------------


def lookup(session_id: str) -> Entry | None:
    """The session's cached answers; None when not cached or Redis does not answer."""
    if not enabled() or not available():
        return None
    try:
        version, body, prompt = client().hmget(_name("c", session_id), ["v", "c", "p"])
    except RedisError as exc:
        failed()
        logger.warning("read cache: lookup of %s failed, reading the database: %s", session_id, exc)
        return None
    if version is None:
        return None
    return Entry(int(version), body, prompt.decode())


def fill(session_id: str, read: Callable[[], Entry]) -> Entry:
    """`read()` (the database), cached if no write to the session committed meanwhile."""
    if not enabled() or not available():
        return read()
    lease_name, token = _name("l", session_id), secrets.token_hex(8)
    try:
        leased = bool(client().set(lease_name, token, px=LEASE_MS, nx=True))
    except RedisError:
        failed()
        leased = False
    entry = read()  # after taking the lease: see _FILL
    if leased:
        ttl_ms = round(settings.SESSIONCTX_READ_CACHE_TTL * 1000 * (1 - TTL_JITTER * random.random()))
        try:
            client().eval(_FILL, 2, _name("c", session_id), lease_name, token, ttl_ms, entry.version,
                          entry.context_json, entry.prompt)
        except RedisError as exc:
            failed()
            logger.warning("read cache: could not store %s: %s", session_id, exc)
    return entry


def _forget(session_id: str) -> None:
    try:
        client().delete(_name("c", session_id), _name("l", session_id))
    except RedisError as exc:
        failed()
        # The entry expires after SESSIONCTX_READ_CACHE_TTL; until then reads may be that old.
        logger.warning("read cache: could not drop %s after a change: %s", session_id, exc)


def context_changed(session_id: str) -> None:
    """Called by every service that changes a session row: drop its cached answers once the change commits."""
    if enabled():
        transaction.on_commit(partial(_forget, session_id))


# --- API keys -------------------------------------------------------------------------------------------


def api_key_get(key_hash: str) -> dict | object | None:
    """A key's cached columns, REVOKED, or None (not cached, or Redis does not answer)."""
    if not enabled() or not available():
        return None
    try:
        raw = client().get(_name("k", key_hash))
    except RedisError as exc:
        failed()
        logger.warning("read cache: key lookup failed, reading the database: %s", exc)
        return None
    if raw is None:
        return None
    return REVOKED if raw == TOMBSTONE else json.loads(raw)


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
