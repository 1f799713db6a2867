"""Who made a change, as the audit history records it."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from ..models import ApiKey


@dataclass(frozen=True)
class Actor:
    """Who made a change: an API key, a person, a model, or the system."""

    label: str
    user: AbstractBaseUser | None = None
    api_key: ApiKey | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Actor:
        return cls(label=f"user:{user.get_username()}", user=user)

    @classmethod
    def for_api_key(cls, api_key: ApiKey) -> Actor:
        return cls(label=f"key:{api_key.prefix}:{api_key.name}"[:255], api_key=api_key)

    @classmethod
    def for_model(cls, model: str) -> Actor:
        return cls(label=f"model:{model}"[:255])

    @classmethod
    def system(cls, what: str = "system") -> Actor:
        return cls(label=what)
