"""A shared cache in front of the API's hottest reads: the context answers and the API keys behind them.

Agents read the context before every model call. From the database, each read costs two PostgreSQL
round trips (the key, the session) and DRF's request handling; from Redis it is one round trip, which
also counts the throttle; from the near cache, a repeated read costs no I/O at all (bench/read_path.py,
docs/benchmarks.md).

The shared cache is Redis (Django's RedisCache, CACHE_URL): a write made by another process (a worker, a
management command, another web machine) reaches it. The near cache in front of it is each web process's
copy of what it read from Redis, kept coherent by Redis itself (client-side caching, CLIENT TRACKING).

Coherence, the rules every change follows:
- **Snapshots.** Every service that changes a session row calls `context_changed`, which deletes the
  cached answer (and any fill in progress) once the transaction commits, before the writer's request
  returns. A read that misses takes a fill lease (SET NX), reads the database, and stores what it read
  only if its lease is still there (one Lua check-and-set): a read that saw the row before a write's
  commit therefore cannot store it after the write's delete. Entries expire after
  SESSIONCTX_READ_CACHE_TTL seconds (each up to TTL_JITTER sooner, so entries filled together do not
  all refill together), which bounds staleness in the one case the delete cannot run: a process killed
  between its commit and the delete, or Redis unreachable at that moment.
- **API keys.** A fill never overwrites (SET NX). Revoking writes a tombstone first and refuses to go on
  if it cannot, then changes the database: a request that read the key as active just before the
  revocation cannot cache it afterwards, so a revoked key is refused at once.
- **The near cache** (SESSIONCTX_NEAR_CACHE) is each web process's copy of the keys' entries and the
  answers it read from Redis. One connection per process has broadcast tracking on for their prefixes:
  Redis pushes down it the name of every such key that anyone changes, deletes or expires (the deletes and
  tombstones above, expiry, a flush). Every lookup first applies every push waiting on that socket (one
  non-blocking poll) and only then reads the copies. A round trip keeps what it read only if no push for
  that key was applied after it began (`_Near.remember`); a push still on its way drops the copy when it
  comes. A write made in this process drops the copies here directly; a lost connection drops them all; a
  copy lives no longer than its Redis entry, and a key's copy at most a minute (so its last-used marker is
  still set).
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
import os
import random
import secrets
import select
import socket
import threading
import time
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
# Each context entry lives SESSIONCTX_READ_CACHE_TTL less up to this fraction of it, drawn at random: a set
# filled at once (the first reads after Redis restarts or is flushed, a burst of new sessions) would
# otherwise expire at once and refill from PostgreSQL in one burst every TTL, for as long as it is read.
TTL_JITTER = 0.2
TOMBSTONE = b"-"

# Store the fill only if the lease taken before reading the database is still there: a write's
# delete (after its commit) removes the lease, so an answer read before that commit is dropped.
_FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'c', ARGV[4], 'p', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
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

    From this process's near cache when it holds all three (no round trip), else one Redis round trip.
    `throttle`: the counter's name, limit and window (auth.throttle_for_key), or None.
    """
    backend = _backend()
    keys = [_names(backend, "k", key_hash), _names(backend, "c", session_id)]
    direct = _direct(backend)
    near = _near(backend) if settings.SESSIONCTX_NEAR_CACHE else None
    now = time.monotonic()
    since = None
    if near is not None:
        since = near.sync()  # every invalidation Redis has sent is applied before the copies are read
        if since is not None:
            found = near.answer(keys[0], keys[1], field, client_version, now)
            if found is not None and (throttle is None or direct.count_here(throttle, found, now)):
                return found
    keys += [_names(backend, "u", key_hash), _names(backend, "l", session_id)]  # only the round trip needs these
    if throttle is not None:
        keys.append(throttle[0])
    token = secrets.token_hex(8)
    args = [field, LAST_USED_TTL, throttle[2] if throttle else 0, "" if client_version is None else client_version,
            token, LEASE_MS, direct.unreported(throttle) + 1 if throttle else 1]
    reply = direct.evalsha(_LOOKUP, keys, args)
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
    direct.reported(throttle, count, window, now)
    if since is not None:
        body_sent = found.version is not None and found.version != client_version
        near.remember(since, keys[0], key_entry, key_ttl, keys[1], found.version, field if body_sent else None,
                      found.body, ctx_ttl, now)
    return found


# --- the direct connections and the near cache ----------------------------------------------------

_MORE = object()  # hiredis: the reply is not complete yet
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
RECONNECT_AFTER = 1.0  # a refused connection is tried again after this long, not on every request
# A thread counts the requests it answers from the near cache itself, reporting them to the shared counter
# at least this often (seconds) and every 1 % of the limit (at most NEAR_COUNT_MAX requests); from 90 % of
# the limit on, every request is counted in Redis, exactly.
NEAR_REPORT_EVERY = 1.0
NEAR_COUNT_MAX = 100
NEAR_MAX_ENTRIES = 10_000  # answers (a context's JSON and prompt, about 2 kB each) and keys kept per process
NEAR_RECENT_MAX = 10_000  # invalidations remembered for the round trips in flight (_Near.remember)


class _Connection:
    """A Redis connection spoken to with hiredis alone (RESP3).

    A round trip costs a third of the CPU of redis-py's client call here (bench/read_path.py): no pool,
    no retry wrapper, no per-command hooks. Pushes that arrive are handed to `on_push`.
    """

    def __init__(self, params: tuple, setup: list[list]) -> None:
        self.address, self.db, self.username, self.password = params
        self.setup = setup  # sent after HELLO on every (re)connection
        self.sock: socket.socket | None = None
        self.reader = None
        self.poller = None
        self.down_until = 0.0
        self.unsupported = False  # the server refused the handshake: callers use redis-py instead

    @staticmethod
    def params(url: str) -> tuple | None:
        """(address, db, username, password) of a plain TCP Redis URL; None for TLS or a unix socket."""
        parsed = parse_url(url)
        if "host" not in parsed or parsed.get("connection_class") not in (None, redis.Connection):
            return None
        return ((parsed["host"], int(parsed.get("port", 6379))), int(parsed.get("db", 0)),
                parsed.get("username"), parsed.get("password"))

    def connect(self) -> None:
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
        commands = [hello, *([["SELECT", self.db]] if self.db else []), *self.setup]
        try:
            try:
                sock.sendall(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
            except OSError as exc:
                raise RedisConnectionError(f"Redis connection lost: {exc}") from exc
            for _ in commands:
                self._reply()
        except ResponseError as exc:
            # No RESP3 or no client tracking (Redis before 6, or a look-alike server): never tried again here.
            self.close()
            self.unsupported = True
            logger.warning("read cache: Redis at %s refused %s (%s): using redis-py, without the near cache",
                           self.address, [c[0] for c in commands], exc)
            raise
        except RedisError:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = self.poller = None

    def call(self, *args):
        if self.sock is None:
            self.connect()
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
                    self.on_push(reply)
                else:
                    break
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise RedisConnectionError(f"Redis connection lost: {exc}") from exc
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            raise NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)
        return reply

    def drain(self) -> None:
        """Apply the pushes waiting on the socket, without blocking."""
        try:
            while self.poller.poll(0):
                data = self.sock.recv(65536)
                if not data:
                    raise OSError("closed by the server")
                self.reader.feed(data)
                while (push := self.reader.gets()) is not _MORE:
                    if not isinstance(push, hiredis.PushNotification):
                        raise hiredis.ProtocolError("a reply nobody asked for")
                    self.on_push(push)
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise RedisConnectionError(f"Redis connection lost: {exc}") from exc

    def on_push(self, push) -> None:
        pass


class _RoundTrips:
    """A thread's round trips (scripts by SHA1) and its count of the requests it answered near, over `call`."""

    unsupported = False  # _Connection sets it when the server refuses its handshake

    def __init__(self) -> None:
        self.shas: dict[str, str] = {}  # script -> its SHA1, once loaded
        self.throttles: dict[str, list] = {}  # name -> [count in Redis, not reported yet, window end, reported at]

    def call(self, *args):
        raise NotImplementedError

    def evalsha(self, script: str, keys: list[str], args: list):
        sha = self.shas.get(script)
        if sha is not None:
            try:
                return self.call("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:  # Redis restarted and forgot its scripts
                pass
        sha = self.call("SCRIPT", "LOAD", script)
        sha = self.shas[script] = sha.decode() if isinstance(sha, bytes) else sha
        return self.call("EVALSHA", sha, len(keys), *keys, *args)

    def count_here(self, throttle: tuple[str, int, int], found: Lookup, now: float) -> bool:
        """Count one request answered near, or False when it must be counted in Redis (see NEAR_REPORT_EVERY)."""
        name, limit, _ = throttle
        state = self.throttles.get(name)
        if state is None:
            return False
        counted, unreported, window_end, reported_at = state
        if (unreported >= min(NEAR_COUNT_MAX, limit // 100) or now >= window_end
                or now - reported_at >= NEAR_REPORT_EVERY or counted + unreported + 1 > limit - limit // 10):
            return False
        state[1] += 1
        found.throttle_count = counted + unreported + 1
        return True

    def unreported(self, throttle: tuple[str, int, int]) -> int:
        state = self.throttles.get(throttle[0])
        return state[1] if state else 0

    def reported(self, throttle, count: int, window_ms: int, now: float) -> None:
        if throttle is not None and window_ms > 0:
            self.throttles[throttle[0]] = [count, 0, now + window_ms / 1000, now]


class _Direct(_Connection, _RoundTrips):
    """A thread's own connection for its round trips."""

    def __init__(self, params: tuple) -> None:
        _Connection.__init__(self, params, setup=[])
        _RoundTrips.__init__(self)


class _ViaClient(_RoundTrips):
    """The same round trips through redis-py, for the servers _Connection does not speak to (TLS, a unix socket)."""

    def __init__(self, client) -> None:
        super().__init__()
        self.client = client

    def call(self, *args):
        return self.client.execute_command(*args)


class _Near(_Connection):
    """This process's copies of cached keys and answers, and the connection that keeps them true.

    The connection has broadcast tracking on for the answers' and keys' prefixes: Redis pushes down it
    the name of every such key anyone changes, deletes or expires. Every lookup first applies what is
    waiting on it (`sync`, one non-blocking poll); copies are only read after that.
    """

    def __init__(self, params: tuple, prefixes: list[str]) -> None:
        tracking = ["CLIENT", "TRACKING", "ON", "BCAST"]
        for prefix in prefixes:
            tracking += ["PREFIX", prefix]
        super().__init__(params, setup=[tracking])
        self.lock = threading.Lock()
        self.keys: dict[str, tuple[tuple[int, frozenset[str]], float]] = {}  # name -> (key entry, expires)
        self.contexts: dict[str, tuple[int, dict[str, bytes], float]] = {}  # name -> (version, bodies, expires)
        self.seq = 0  # invalidations applied so far
        self.recent: dict[str, int] = {}  # name -> seq of its last invalidation
        self.floor = 0  # a round trip begun before this seq keeps nothing

    def sync(self) -> int | None:
        """Apply every invalidation waiting; the sequence number a round trip begun now starts from, or None
        when the copies cannot be trusted (no connection to Redis)."""
        with self.lock:
            try:
                if self.sock is None:
                    self.connect()
                    self._clear()  # nothing told us of the changes made while we were not connected
                else:
                    self.drain()
            except RedisError:
                self._clear()
                return None
            return self.seq

    def _clear(self) -> None:
        self.keys.clear()
        self.contexts.clear()
        self.recent.clear()
        self.seq += 1
        self.floor = self.seq

    def on_push(self, push) -> None:  # with the lock held: from sync
        if not push or push[0] != b"invalidate":
            return
        if push[1] is None:  # FLUSHDB / FLUSHALL
            self._clear()
            return
        for name in push[1]:
            self._forget(name.decode())

    def _forget(self, name: str) -> None:
        self.seq += 1
        self.recent[name] = self.seq
        if len(self.recent) > NEAR_RECENT_MAX:
            self.recent.clear()
            self.floor = self.seq
        self.keys.pop(name, None)
        self.contexts.pop(name, None)

    def forget(self, name: str) -> None:
        """A write made in this process: its copies go at once, before the push comes."""
        with self.lock:
            self._forget(name)

    def answer(self, key_name: str, ctx_name: str, field: str, client_version: int | None,
               now: float) -> Lookup | None:
        """The lookup from the copies, if they hold all of it (the throttle is the caller's)."""
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
        return Lookup(key_entry=key[0], key_revoked=False, version=version, body=body, throttle_count=None,
                      first_use_this_minute=False, lease=None)

    def remember(self, since: int, key_name: str, key_entry, key_ttl_ms: int, ctx_name: str, version: int | None,
                 field: str | None, body: bytes | None, ctx_ttl_ms: int, now: float) -> None:
        """Keep what a round trip begun at `since` read, no longer than Redis keeps it.

        Redis pushes a change made after the read after it, so a push still on its way will drop the copy
        when it is applied. One applied meanwhile (by another thread) is in `recent`: that copy is not kept.
        A key's copy lives at most LAST_USED_TTL, so its once-a-minute last-used marker is still set.
        """
        with self.lock:
            if self.sock is None or since < self.floor:
                return
            if len(self.contexts) >= NEAR_MAX_ENTRIES:
                self.contexts = {k: v for k, v in self.contexts.items() if v[2] > now}
                if len(self.contexts) >= NEAR_MAX_ENTRIES:
                    self.contexts.clear()
            if len(self.keys) >= NEAR_MAX_ENTRIES:
                self.keys.clear()
            if key_entry is not None and key_ttl_ms > 0 and self.recent.get(key_name, 0) <= since:
                self.keys[key_name] = (key_entry, now + min(key_ttl_ms / 1000, LAST_USED_TTL))
            if version is None or ctx_ttl_ms <= 0 or self.recent.get(ctx_name, 0) > since:
                return
            held = self.contexts.get(ctx_name)
            bodies = dict(held[1]) if held is not None and held[0] == version else {}
            if field is not None:
                bodies[field] = body
            self.contexts[ctx_name] = (version, bodies, now + ctx_ttl_ms / 1000)


def _direct(backend: RedisCache) -> _RoundTrips:
    """This thread's round trips to the cache's (first) server: its own connection, or redis-py's."""
    pools = backend._cache  # the cache's RedisCacheClient: one per thread, like the cache object
    direct = getattr(pools, "sessionctx_direct", None)
    if direct is None or direct.unsupported:
        params = _Connection.params(pools._servers[0]) if direct is None else None
        direct = _Direct(params) if params is not None else _ViaClient(redis_client(backend))
        pools.sessionctx_direct = direct
    return direct


_nears: dict[tuple, _Near] = {}
_nears_lock = threading.Lock()


def _near(backend: RedisCache) -> _Near | None:
    """This process's near cache for the cache's server; None where it cannot have one."""
    pools = backend._cache
    near = getattr(pools, "sessionctx_near", _MORE)
    if near is _MORE:
        params = _Connection.params(pools._servers[0])
        prefixes = [_names(backend, "c", ""), _names(backend, "k", "")]
        if params is None or any(_names(backend, kind, "x") != prefix + "x"
                                 for kind, prefix in zip("ck", prefixes, strict=True)):
            near = None  # a KEY_FUNCTION whose names do not start alike: tracking by prefix cannot see them
        else:
            key = (os.getpid(), pools._servers[0], *prefixes)  # a forked child makes its own
            with _nears_lock:
                near = _nears.get(key)
                if near is None:
                    near = _nears[key] = _Near(params, prefixes)
        pools.sessionctx_near = near
    return None if near is None or near.unsupported else near


def _near_forget(name: str) -> None:
    """Drop `name` from this process's near caches now (a write made here), without waiting for its push."""
    with _nears_lock:
        nears = [near for (pid, *_), near in _nears.items() if pid == os.getpid()]
    for near in nears:
        near.forget(name)


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
    direct = _direct(backend)
    entry_name, lease_name = _names(backend, "c", session_id), _names(backend, "l", session_id)
    token, leased = lease, lease is not None
    if not leased:
        token = secrets.token_hex(8)
        try:
            leased = direct.call("SET", lease_name, token, "PX", LEASE_MS, "NX") is not None
        except RedisError:
            leased = False
    entry = read()  # after taking the lease: see _FILL
    if leased:
        ttl_ms = round(settings.SESSIONCTX_READ_CACHE_TTL * 1000 * (1 - TTL_JITTER * random.random()))
        args = [token, ttl_ms, entry[VERSION], entry[CONTEXT_JSON], entry[PROMPT]]
        try:
            direct.evalsha(_FILL, [entry_name, lease_name], args)
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
