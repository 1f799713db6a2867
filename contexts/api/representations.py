"""The one representation of a session's context: the JSON of GET .../context and the prompt block, built from
the database or served from the read cache (which stores exactly what is built here)."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from .. import readcache, selectors
from ..models import SessionContext
from ..prompting import render_prompt
from .serializers import WRITE_RECEIPT_FIELDS, ContextOutputSerializer

CONTEXT_FIELDS = tuple(ContextOutputSerializer.Meta.fields)
_DATETIME = serializers.DateTimeField()  # formats as the serializer's fields do
_JSON = JSONRenderer()


def context_representation(row: Mapping) -> dict:
    """ContextOutputSerializer's output for a row from selectors.context_get (assignee as a username).

    Built from a `.values()` row: a ModelSerializer rebuilds its fields on every call, which the read path
    pays on every agent's turn. The serializer stays for the schema, and tests check both give the same JSON.
    """
    data = {name: row[name] for name in CONTEXT_FIELDS}
    data["created_at"] = _DATETIME.to_representation(data["created_at"])
    data["updated_at"] = _DATETIME.to_representation(data["updated_at"])
    return data


def write_receipt(row: Mapping) -> dict:
    """A write's answer for a key without the read scope: the version and state, none of the snapshot."""
    data = {name: row[name] for name in WRITE_RECEIPT_FIELDS}
    data["updated_at"] = _DATETIME.to_representation(data["updated_at"])
    return data


def row_of(session: SessionContext) -> dict:
    """A session row as selectors.context_get gives it, from a model instance (a write's result)."""
    row = {name: getattr(session, name) for name in CONTEXT_FIELDS if name != "assignee"}
    row["assignee"] = session.assignee.get_username() if session.assignee_id else None
    return row


def context_of(project_id: int, session_id: str, *, cached: bool = True) -> readcache.Entry:
    """The session's answers (version, context JSON, prompt, the row's key for the ETag): from the read cache,
    else the database; with `cached=False` from the database (a fresh read: the cache may not yet have dropped an
    update's old answer)."""
    if not cached:
        return _build(project_id, session_id)
    return (readcache.lookup(project_id, session_id)
            or readcache.fill(project_id, session_id, lambda: _build(project_id, session_id)))


def _build(project_id: int, session_id: str) -> readcache.Entry:
    row = selectors.context_get(session_id, (*CONTEXT_FIELDS, "pk"), project=project_id)
    return readcache.Entry(row["version"], _JSON.render(context_representation(row)), render_prompt(row),
                           row["pk"])
