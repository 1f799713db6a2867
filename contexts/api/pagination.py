"""Cursor pagination of the API's lists (`next`/`previous` links; no OFFSET, no COUNT)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class NewestFirstPagination(CursorPagination):
    ordering = ("-updated_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class RevisionPagination(NewestFirstPagination):
    ordering = "-version"


class RunPagination(NewestFirstPagination):
    ordering = ("-created_at", "-id")


class TranscriptPagination(NewestFirstPagination):
    ordering = "seq"
    page_size = 100
    max_page_size = 500
