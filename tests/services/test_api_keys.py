"""Agents' API keys: the secret shown once (only its hash stored), checked on every request, revoked at once."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from contexts import services
from contexts.exceptions import InvalidInput
from contexts.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_cache(settings):
    """A cache of this test's own for the last-used marker (other tests' keys may have had the same id)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"api-keys-{uuid.uuid4().hex}"}}


def test_a_new_key_is_shown_once_and_only_its_hash_is_stored():
    key, raw = services.api_key_create(name="  billing agent ", scopes=["write", "read", "write"])

    stored = ApiKey.objects.get(pk=key.pk)
    assert raw.startswith(f"sck_{stored.prefix}_") and len(raw) > 40
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest() == services.api_key_hash(raw)
    assert raw.split("_", 2)[2] not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    assert (stored.name, stored.scopes, stored.is_active, stored.last_used_at) == (
        "billing agent", ["read", "write"], True, None)


@pytest.mark.parametrize("name, scopes", [("", ["read"]), ("x" * 101, ["read"]), ("agent", []),
                                          ("agent", ["read", "admin"])],
                         ids=["no-name", "long-name", "no-scopes", "unknown-scope"])
def test_a_key_without_a_name_or_with_unknown_scopes_is_refused_and_not_created(name, scopes):
    with pytest.raises(InvalidInput):
        services.api_key_create(name=name, scopes=scopes)
    assert not ApiKey.objects.exists()


def test_a_key_authenticates_and_is_marked_used_once_a_minute(own_cache):
    key, raw = services.api_key_create(name="agent", scopes=["read"])

    found = services.api_key_authenticate(raw)

    assert found.pk == key.pk and (found.name, found.scopes) == ("agent", ["read"])
    first_use = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first_use is not None
    assert services.api_key_authenticate(raw).pk == key.pk
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first_use


def test_an_unknown_key_is_not_authenticated(own_cache):
    key, raw = services.api_key_create(name="agent", scopes=["read"])
    assert services.api_key_authenticate(raw + "x") is None
    assert services.api_key_authenticate("sck_00000000_nothing") is None
    assert ApiKey.objects.get(pk=key.pk).last_used_at is None


def test_a_revoked_key_is_refused_from_the_next_request_on(own_cache):
    key, raw = services.api_key_create(name="agent", scopes=["read", "write"])
    assert services.api_key_authenticate(raw) is not None  # known, and cached by now

    revoked = services.api_key_revoke(api_key=key)

    stored = ApiKey.objects.get(pk=key.pk)
    assert (stored.is_active, revoked.is_active) == (False, False)
    assert stored.revoked_at is not None and revoked.revoked_at == stored.revoked_at
    assert key.is_active  # the caller's instance is left as it was; the new state is returned
    assert services.api_key_authenticate(raw) is None
    other, other_raw = services.api_key_create(name="other", scopes=["read"])
    assert services.api_key_authenticate(other_raw).pk == other.pk
