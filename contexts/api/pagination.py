"""Cursor pagination of the API's lists (`next`/`previous` links; no OFFSET, no COUNT)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from .. import selectors


def page_size(asked: str | None, *, default: int, maximum: int) -> int:
    """`limit`: a whole number of at least 1 (above the maximum gives the maximum). Anything else is a 400, not the
    default page size silently: the caller asked for something."""
    if asked is None:
        return default
    digits = asked.lstrip("0")
    if not re.fullmatch(r"[0-9]+", asked) or not digits:
        raise ValidationError({"limit": ["A whole number of at least 1."]})
    # Compared by length first: int() refuses a string of more than 4300 digits, which is still just a big limit.
    return maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)


LIMIT_SCHEMA = {"type": "integer", "minimum": 1}


def invalid_cursor() -> NotFound:
    """A cursor no list gave (mangled, cut short, or naming a position its ordering cannot take): the 404 DRF
    answers (no page is there; the schema cannot tell a valid cursor from another string, so a 400 would refuse
    what it allows), saying that it is the cursor, not the session, that is not there."""
    return NotFound("No page at this cursor: it is not one this list gave. Follow `next` or `previous` as they "
                    "are, or leave cursor out for the first page.")


class NewestFirstPagination(CursorPagination):
    ordering = ("-updated_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        if self.cursor_query_param not in request.query_params:
            return super().paginate_queryset(queryset, request, view)
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, TypeError, OverflowError, DjangoValidationError):
            # A cursor that decodes but holds a position its ordering cannot take ("p=abc" for a version): the
            # 404 of any other cursor no list gave, not a 500.
            raise invalid_cursor() from None

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise invalid_cursor() from None

    def get_page_size(self, request):
        return page_size(request.query_params.get(self.page_size_query_param), default=self.page_size,
                         maximum=self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = LIMIT_SCHEMA
        return parameters


class RevisionPagination(NewestFirstPagination):
    ordering = "-version"


class RunPagination(NewestFirstPagination):
    ordering = ("-created_at", "-id")


class TranscriptPagination(NewestFirstPagination):
    ordering = "seq"
    page_size = 100
    max_page_size = 500


class SessionPagination(BasePagination):
    """Sessions, newest first, paged by the keyset pager the staff pages use (selectors.session_page).

    The cursor is opaque to clients: `a.<key>` for the page after a row, `b.<key>` for the page before one.
    """

    page_size = 50
    max_page_size = 200
    cursor_query_param = "cursor"
    page_size_query_param = "limit"

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        cursor = request.query_params.get(self.cursor_query_param, "")
        direction, _, key = cursor.partition(".")
        if cursor and (direction not in ("a", "b") or not selectors.cursor_is_valid(key)):
            raise invalid_cursor()
        size = page_size(request.query_params.get(self.page_size_query_param), default=self.page_size,
                         maximum=self.max_page_size)
        page = selectors.session_page(queryset, after=key if direction == "a" else "",
                                      before=key if direction == "b" else "", size=size)
        self.next_cursor = page.next_cursor and f"a.{page.next_cursor}"
        self.prev_cursor = page.prev_cursor and f"b.{page.prev_cursor}"
        return page.rows

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_query_param, cursor)

    def get_paginated_response(self, data):
        return Response({"next": self._link(self.next_cursor), "previous": self._link(self.prev_cursor),
                         "results": data})

    def get_paginated_response_schema(self, schema):
        return NewestFirstPagination().get_paginated_response_schema(schema)

    def get_schema_operation_parameters(self, view):
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "The pagination cursor value (from `next` or `previous`).", "schema": {"type": "string"}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Number of results to return per page (at most {self.max_page_size}).",
             "schema": LIMIT_SCHEMA},
        ]
