"""/api/v1/sessions and /api/v1/sessions/{id}: list, create, erase."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from .. import selectors, services
from .context import context_response
from .http import ApiListView, ApiView, validated
from .openapi import ETAG_HEADER, errors
from .pagination import SessionPagination
from .serializers import (
    ContextWriteOutputSerializer,
    SessionCreateInputSerializer,
    SessionFilterSerializer,
    SessionOutputSerializer,
)


class SessionListApi(ApiListView):
    serializer_class = SessionOutputSerializer
    pagination_class = SessionPagination

    @extend_schema(tags=["sessions"], operation_id="sessions_list", parameters=[SessionFilterSerializer],
                   responses={200: SessionOutputSerializer(many=True), **errors(400, 404)},
                   description="Sessions, most recently changed first, with cursor pagination (`next`/`previous`).")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.session_list(project=self.request.auth.project_id,
                                      **validated(SessionFilterSerializer, self.request.query_params))


class SessionApi(ApiView):
    @extend_schema(tags=["sessions"], operation_id="session_create", request=SessionCreateInputSerializer,
                   parameters=[ETAG_HEADER],
                   responses={200: ContextWriteOutputSerializer, 201: ContextWriteOutputSerializer,
                              **errors(400, 413, 415)},
                   description="Create the session (201), or answer the existing one (200): idempotent. "
                               "Owners unknown so far are filled in; known ones are never overwritten.")
    def put(self, request, session_id: str):
        data = validated(SessionCreateInputSerializer, request.data)
        session, created = services.session_get_or_create(session_id=session_id,
                                                          project=request.auth.project_id, **data)
        return context_response(request, session, status_code=201 if created else 200)

    @extend_schema(tags=["sessions"], operation_id="session_delete", responses={204: None, **errors(400, 404)},
                   description="Erase the session with its messages, revisions, runs and handoff events.")
    def delete(self, request, session_id: str):
        services.session_delete(session=selectors.session_get(session_id, project=request.auth.project_id),
                                actor=services.Actor.for_api_key(request.auth))
        return Response(status=status.HTTP_204_NO_CONTENT)
