"""A shared cache in front of the API's hottest reads: the context answers and the API keys behind them.

Agents read the context before every model call. From the database, each read costs two PostgreSQL
round trips (the key, the session) and DRF's request handling; from Redis it is one round trip, which
also counts the throttle; from the near cache, a repeated read costs no I/O at all (bench/read_path.py,
docs/benchmarks.md).

The shared cache is Redis (Django's RedisCache, CACHE_URL): a write made by another process (a worker, a
management command, another web machine) reaches it. The near cache in front of it is each web thread's
copy of what it read from Redis, kept coherent by Redis itself (client-side caching, CLIENT TRACKING).

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
- **The near cache** (SESSIONCTX_NEAR_CACHE) keeps only what a thread read through its own connection,
  on which Redis then pushes an invalidation whenever anyone changes, deletes or expires one of those
  keys: the deletes and tombstones above, expiry, a flush. Before answering from its copy, the thread
  applies every push waiting on its socket (a non-blocking poll); a write made in this process also drops
  the copies of every thread here directly; a lost connection drops all of them; a copy lives no longer
  than its Redis entry, and a key's copy at most a minute (so its last-used marker is still set).
  What this gives up: for another process, a write's invalidation is a push, not part of the writer's own
  round trip. Redis sends it in the same event-loop pass as the writer's reply, so on one machine it is
  on the reader's socket before the writer's request has even answered; across machines, a read that
  starts after a write answered can still see the old answer for as long as the network takes to deliver
  that push (normally well under a millisecond; a lost packet's retransmission at worst). Writes are not
  affected (If-Match is checked against the database). SESSIONCTX_NEAR_CACHE=false restores strict reads.
- **The throttle, near.** A thread counts a key's requests served from its copies itself and reports them
  to the shared counter (INCRBY, on its next round trip) at least every NEAR_REPORT_EVERY seconds and
  every 1 % of the limit; a thread that last saw the counter at 90 % of the limit or more counts every
  request in Redis. Beyond the limit by at most 1 % of it per thread still under 90 %; limits under 100
  requests per window are always counted exactly.
"""

from __future__ import annotations

import logging
import secrets
import select
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from functools import partial

import hiredis
import redis
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

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
# by a cached key, the fill lease too (see context_fill), which saves a miss one more round trip. The
# remaining lifetimes let the near cache keep what it read no longer than Redis keeps it.
_LOOKUP = """
local key = redis.call('GET', KEYS[1])
local ctx = redis.call('HMGET', KEYS[2], 'v', ARGV[1])
if ctx[1] and ctx[1] == ARGV[4] then ctx[2] = '' end  -- the client holds this version: a 304 needs no body
local first_use = redis.call('SET', KEYS[3], 1, 'EX', ARGV[2], 'NX') and 1 or 0
local leased = 0
if not ctx[1] and key and key ~= '-' then
  leased = redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6], 'NX') and 1 or 0
end
local count, window = -1, -1
if KEYS[5] then
  redis.call('SET', KEYS[5], 0, 'EX', ARGV[3], 'NX')
  count = redis.call('INCRBY', KEYS[5], ARGV[7])
  window = redis.call('PTTL', KEYS[5])
end
return {key or '', ctx[1] or '', ctx[2] or '', first_use, count, leased,
        redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]), window}
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


def lookup(key_hash: str, session_id: str, field: str, *, throttle: tuple[str, int, int] | None,
           client_version: int | None = None) -> Lookup:
    """The key's entry, the session's cached `field` (unless it is at `client_version`), the throttle counter.

    From this thread's near cache when it holds all three (no I/O), else one Redis round trip.
    `throttle`: the counter's name, limit and window (auth.throttle_for_key), or None.
    """
    backend = _backend()
    keys = [_names(backend, "k", key_hash), _names(backend, "c", session_id), _names(backend, "u", key_hash),
            _names(backend, "l", session_id)]
    direct = _direct(backend)
    near = direct is not None and settings.SESSIONCTX_NEAR_CACHE
    now = time.monotonic()
    if near:
        found = direct.answer(keys[0], keys[1], field, throttle, client_version, now)
        if found is not None:
            return found
    if throttle is not None:
        keys.append(throttle[0])
    token = secrets.token_hex(8)
    args = [field, LAST_USED_TTL, throttle[2] if throttle else 0, "" if client_version is None else client_version,
            token, LEASE_MS, direct.unreported(throttle) + 1 if direct is not None and throttle else 1]
    if direct is not None:
        reply = direct.evalsha(_LOOKUP, keys, args)
    else:
        reply = _evalsha_lookup(redis_client(backend), keys, args)
    raw_key, version, body, first_use, count, leased, key_ttl, ctx_ttl, window = reply
    key_entry = None
    if raw_key and raw_key != TOMBSTONE:
        key_id, _, scopes = raw_key.decode().partition("|")
        key_entry = (int(key_id), frozenset(scopes.split(",")))
    found = Lookup(
        key_entry=key_entry,
        key_revoked=raw_key == TOMBSTONE,
        # The three fields are written together: a version means the entry is there (a prompt may be empty).
        version=int(version) if version else None,
        body=body if version else None,
        throttle_count=count if throttle is not None else None,
        first_use_this_minute=first_use == 1,
        lease=token if leased == 1 else None,
    )
    if direct is not None:
        direct.reported(throttle, count, window, now)
        if near:
            body_sent = found.version is not None and found.version != client_version
            direct.remember(keys[0], key_entry, key_ttl, keys[1], found.version, field if body_sent else None,
                            found.body, ctx_ttl, now)
    return found


def _evalsha_lookup(client, keys: list[str], args: list) -> list:
    sha = getattr(client, "sessionctx_lookup_sha", None)
    if sha is not None:
        try:
            return client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted and forgot its scripts
            pass
    sha = client.sessionctx_lookup_sha = client.script_load(_LOOKUP)
    return client.evalsha(sha, len(keys), *keys, *args)


# --- the direct connection and the near cache -----------------------------------------------------

_MORE = object()  # hiredis: the reply is not complete yet
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
RECONNECT_AFTER = 1.0  # a refused connection is tried again after this long, not on every request
# The near cache counts a key's requests itself, reporting them to the shared counter at least this often
# (seconds) and every 1 % of the limit (at most NEAR_COUNT_MAX requests); from 90 % of the limit every
# request is counted in Redis, exactly.
NEAR_REPORT_EVERY = 1.0
NEAR_COUNT_MAX = 100

_directs: weakref.WeakSet[_Direct] = weakref.WeakSet()
_directs_lock = threading.Lock()


def _direct(backend: RedisCache) -> _Direct | None:
    """This thread's direct connection to the cache's (first) server; None where it cannot speak to it."""
    pools = backend._cache  # the cache's RedisCacheClient: one per thread, like the cache object
    direct = getattr(pools, "sessionctx_direct", _MORE)
    if direct is _MORE:
        direct = pools.sessionctx_direct = _Direct.for_url(pools._servers[0])
        if direct is not None:
            with _directs_lock:
                _directs.add(direct)
    return direct


def _near_forget(name: str) -> None:
    """Drop `name` from every near cache of this process now: a write here is seen by the next read here at
    once, without waiting for the Redis push that tells the other processes."""
    with _directs_lock:
        directs = list(_directs)
    for direct in directs:
        direct.forget(name)


class _Direct:
    """A thread's own Redis connection, spoken to with hiredis alone (RESP3), and its near cache.

    A round trip through it costs a third of the CPU of redis-py's client call (bench/read_path.py), and
    it has CLIENT TRACKING on: Redis remembers which keys this connection read and pushes an invalidation
    down it when anyone changes, deletes or expires one of them. The near cache keeps only what was read
    through this connection, and reads every waiting push before it answers.
    """

    def __init__(self, host: str, port: int, db: int, username: str | None, password: str | None) -> None:
        self.address, self.db, self.username, self.password = (host, port), db, username, password
        self.sock: socket.socket | None = None
        self.reader = None
        self.poller = None
        self.down_until = 0.0
        self.sha: str | None = None
        self.keys: dict[str, tuple[tuple[int, frozenset[str]], float]] = {}  # name -> (key entry, expires)
        self.contexts: dict[str, tuple[int, dict[str, bytes], float]] = {}  # name -> (version, bodies, expires)
        self.throttles: dict[str, list] = {}  # name -> [count in Redis, not yet reported, window end, reported]

    @classmethod
    def for_url(cls, url: str) -> _Direct | None:
        params = parse_url(url)
        if "host" not in params or params.get("connection_class") not in (None, redis.Connection):
            return None  # a unix socket or TLS: the redis-py client does those
        return cls(params["host"], int(params.get("port", 6379)), int(params.get("db", 0)),
                   params.get("username"), params.get("password"))

    # -- the connection

    def _connect(self) -> None:
        if time.monotonic() < self.down_until:
            raise RedisConnectionError("Redis was unreachable a moment ago")
        try:
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            self.down_until = time.monotonic() + RECONNECT_AFTER
            raise RedisConnectionError(f"cannot connect to Redis at {self.address}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(SOCKET_TIMEOUT)
        self.sock, self.reader = sock, hiredis.Reader(notEnoughData=_MORE)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        hello = ["HELLO", "3"]
        if self.password is not None:
            hello += ["AUTH", self.username or "default", self.password]
        commands = [hello, ["CLIENT", "TRACKING", "ON"]] + ([["SELECT", self.db]] if self.db else [])
        try:
            sock.sendall(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
            for _ in commands:
                self._reply()
        except RedisError:
            self.close()
            raise

    def close(self) -> None:
        """Drop the connection and everything read through it: pushes may have been lost with it.

        The throttle counts stay: what was not reported yet is reported by the next round trip.
        """
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = self.poller = None
        self.keys.clear()
        self.contexts.clear()

    def call(self, *args):
        if self.sock is None:
            self._connect()
        try:
            self.sock.sendall(hiredis.pack_command(args))
        except OSError as exc:
            self.close()
            raise RedisConnectionError(f"Redis connection lost: {exc}") from exc
        return self._reply()

    def _reply(self):
        """The next reply; the pushes that come before it are applied on the way."""
        try:
            while True:
                reply = self.reader.gets()
                if reply is _MORE:
                    data = self.sock.recv(65536)
                    if not data:
                        raise OSError("closed by the server")
                    self.reader.feed(data)
                elif isinstance(reply, hiredis.PushNotification):
                    self._pushed(reply)
                else:
                    break
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise RedisConnectionError(f"Redis connection lost: {exc}") from exc
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            raise NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)
        return reply

    def evalsha(self, script: str, keys: list[str], args: list):
        if self.sha is not None:
            try:
                return self.call("EVALSHA", self.sha, len(keys), *keys, *args)
            except NoScriptError:  # Redis restarted and forgot its scripts
                pass
        self.sha = self.call("SCRIPT", "LOAD", script).decode()
        return self.call("EVALSHA", self.sha, len(keys), *keys, *args)

    def drain(self) -> None:
        """Apply the pushes waiting on the socket, without blocking."""
        if self.sock is None:
            return
        try:
            while self.poller.poll(0):
                data = self.sock.recv(65536)
                if not data:
                    raise OSError("closed by the server")
                self.reader.feed(data)
                while (push := self.reader.gets()) is not _MORE:
                    if not isinstance(push, hiredis.PushNotification):
                        raise hiredis.ProtocolError("a reply nobody asked for")
                    self._pushed(push)
        except (OSError, hiredis.ProtocolError):
            self.close()  # the next round trip connects afresh, with an empty near cache

    def _pushed(self, push) -> None:
        if not push or push[0] != b"invalidate":
            return
        if push[1] is None:  # FLUSHDB / FLUSHALL
            self.keys.clear()
            self.contexts.clear()
            return
        for name in push[1]:
            self.forget(name.decode())

    # -- the near cache

    def forget(self, name: str) -> None:
        self.keys.pop(name, None)
        self.contexts.pop(name, None)

    def answer(self, key_name: str, ctx_name: str, field: str, throttle, client_version, now: float) -> Lookup | None:
        """The lookup from what this connection read, if it holds all of it and every push is applied."""
        self.drain()
        key = self.keys.get(key_name)
        ctx = self.contexts.get(ctx_name)
        if key is None or ctx is None or key[1] <= now or ctx[2] <= now:
            return None
        version, bodies, _ = ctx
        if version == client_version:
            body = b""  # a 304: no body needed
        elif field in bodies:
            body = bodies[field]
        else:
            return None
        count = None
        if throttle is not None:
            count = self._count(throttle, now)
            if count is None:
                return None
        return Lookup(key_entry=key[0], key_revoked=False, version=version, body=body, throttle_count=count,
                      first_use_this_minute=False, lease=None)

    def _count(self, throttle: tuple[str, int, int], now: float) -> int | None:
        """Count one request here, or None when it must be counted in Redis (far from the limit only)."""
        name, limit, _ = throttle
        state = self.throttles.get(name)
        if state is None:
            return None
        counted, unreported, window_end, reported_at = state
        if (unreported >= min(NEAR_COUNT_MAX, limit // 100) or now >= window_end
                or now - reported_at >= NEAR_REPORT_EVERY or counted + unreported + 1 > limit - limit // 10):
            return None
        state[1] += 1
        return counted + unreported + 1

    def unreported(self, throttle: tuple[str, int, int]) -> int:
        state = self.throttles.get(throttle[0])
        return state[1] if state else 0

    def reported(self, throttle, count: int, window_ms: int, now: float) -> None:
        if throttle is not None and window_ms > 0:
            self.throttles[throttle[0]] = [count, 0, now + window_ms / 1000, now]

    def remember(self, key_name: str, key_entry, key_ttl_ms: int, ctx_name: str, version: int | None,
                 field: str | None, body: bytes | None, ctx_ttl_ms: int, now: float) -> None:
        """Keep what the round trip read through this connection, no longer than Redis keeps it.

        A key's entry is kept at most LAST_USED_TTL, so its once-a-minute last-used marker is still set.
        """
        if key_entry is not None and key_ttl_ms > 0:
            self.keys[key_name] = (key_entry, now + min(key_ttl_ms / 1000, LAST_USED_TTL))
        if version is None or ctx_ttl_ms <= 0:
            return
        held = self.contexts.get(ctx_name)
        bodies = dict(held[1]) if held is not None and held[0] == version else {}
        if field is not None:
            bodies[field] = body
        self.contexts[ctx_name] = (version, bodies, now + ctx_ttl_ms / 1000)


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
    name = _names(backend, "k", key_hash)
    try:
        redis_client(backend).set(name, TOMBSTONE, ex=TOMBSTONE_TTL)
        _near_forget(name)
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
    name = _names(backend, "c", session_id)
    try:
        redis_client(backend).delete(name, _names(backend, "l", session_id))
    except RedisError as exc:
        # The entry expires after SESSIONCTX_READ_CACHE_TTL; until then reads may be that old.
        logger.warning("read cache: could not drop %s after a change: %s", session_id, exc)
    _near_forget(name)


def context_changed(session_id: str) -> None:
    """Called by every service that changes a session row: drop its cached answers once the change commits."""
    if enabled():
        transaction.on_commit(partial(context_forget, session_id))
