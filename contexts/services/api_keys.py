"""Agents' API keys: created with a secret shown once, checked on every request, revoked at once."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from .. import readcache
from ..exceptions import InvalidInput
from ..models import ApiKey, Project

# What a request needs of its key; the cache keeps these, so an authenticated request needs no query.
REQUEST_COLUMNS = ("id", "name", "prefix", "scopes", "project_id", "expires_at")
# last_used_at is a hint for admins, not an audit: written at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
LAST_USED_SECONDS = int(LAST_USED_RESOLUTION.total_seconds())


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyExpired(Exception):
    """The key exists and is active but its expires_at has passed."""


@transaction.atomic
def api_key_create(*, name: str, scopes: list[str], project: Project | None = None, expires_at=None,
                   created_by: AbstractBaseUser | None = None) -> tuple[ApiKey, str]:
    """A new key of `project` (default: the `default` project); the raw key is returned once and only its hash
    is stored."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("An API key needs a name of 1-100 characters.", details={"fields": {"name": "Invalid."}})
    scopes = sorted(set(scopes))
    if not scopes or not set(scopes) <= set(ApiKey.Scope.values):
        raise InvalidInput(f"Scopes must be among {', '.join(ApiKey.Scope.values)}.",
                           details={"fields": {"scopes": "Invalid."}})
    prefix = secrets.token_hex(4)
    raw_key = f"sck_{prefix}_{secrets.token_urlsafe(32)}"
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("An API key's expiry must be in the future.", details={"fields": {"expires_at": "Past."}})
    key = ApiKey.objects.create(project=project or Project.default(), name=name, prefix=prefix,
                                key_hash=api_key_hash(raw_key), scopes=scopes, expires_at=expires_at,
                                created_by=created_by)
    return key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key: refused from the next request on, by every process."""
    # The cache's tombstone goes first and must succeed: once it is there no request can cache the key as
    # active again, so the key is refused at once when the update below commits.
    readcache.api_key_forget(api_key.key_hash)
    ApiKey.objects.filter(pk=api_key.pk).update(is_active=False, revoked_at=timezone.now())
    return ApiKey.objects.get(pk=api_key.pk)


def api_key_authenticate(raw_key: str, *, before_database: Callable[[], None] | None = None) -> ApiKey | None:
    """The active key behind `raw_key` (with REQUEST_COLUMNS loaded), or None; marks it used. Raises
    ApiKeyExpired for a key past its expires_at.

    Checked on every request, so a revoked key stops working at once. `before_database`: called when the key is
    not in the read cache, before the database is asked (it may refuse by raising): a key in use costs nothing
    more, an unknown one always comes this way.
    """
    key_hash = api_key_hash(raw_key)
    # Every API request starts here: a cached key and its last-used marker cost one round trip together.
    cached, first_use = readcache.api_key_get(key_hash, mark_used_for=LAST_USED_SECONDS)
    if cached is readcache.REVOKED:
        return None
    if cached is not None:
        expires_at = cached.pop("expires_at", None)
        key = ApiKey(key_hash=key_hash, is_active=True, **cached,
                     expires_at=datetime.fromisoformat(expires_at) if expires_at else None)
        _check_expiry(key)
        if first_use:
            _record_use(key)
        return key
    if before_database is not None:
        before_database()
    key = ApiKey.objects.filter(key_hash=key_hash, is_active=True).only(*REQUEST_COLUMNS, "key_hash").first()
    if key is None:
        return None
    _check_expiry(key)
    columns = {name: getattr(key, name) for name in REQUEST_COLUMNS}
    columns["expires_at"] = key.expires_at.isoformat() if key.expires_at else None
    readcache.api_key_store(key_hash, columns)
    api_key_touch(key)
    return key


def api_key_recheck(key: ApiKey) -> ApiKey | None:
    """The key authenticated earlier in this request, as the database has it now: None once revoked (or deleted);
    raises ApiKeyExpired past its expires_at. For a request that held on (a long poll) before answering: what
    happened while it waited is not for a key revoked or expired meanwhile."""
    current = ApiKey.objects.filter(pk=key.pk, is_active=True).only(*REQUEST_COLUMNS).first()
    if current is not None:
        _check_expiry(current)
    return current


def _check_expiry(key: ApiKey) -> None:
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise ApiKeyExpired(key.expires_at)


def api_key_touch(key: ApiKey) -> None:
    """Record that the key was used, at most once a minute per key (per cache)."""
    if readcache.api_key_mark_used(key.key_hash, LAST_USED_SECONDS):
        _record_use(key)


def _record_use(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
