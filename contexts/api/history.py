"""/api/v1/sessions/{id}/revisions: the audit history, and restoring a version from it."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema

from .. import selectors, services
from ..models import Revision
from .context import context_response
from .http import ApiListView, ApiView, expected_version, validated
from .openapi import ETAG_HEADER, IF_MATCH, errors
from .pagination import RevisionPagination
from .serializers import (
    ContextWriteOutputSerializer,
    QueryFilterSerializer,
    RevertInputSerializer,
    RevisionOutputSerializer,
)


class RevisionListApi(ApiListView):
    serializer_class = RevisionOutputSerializer
    pagination_class = RevisionPagination

    @extend_schema(tags=["history"], operation_id="revisions_list",
                   responses={200: RevisionOutputSerializer(many=True), **errors(400, 404)},
                   description="Every version of the snapshot, newest first: who, why, when, what changed.")
    def get(self, request, *args, **kwargs):
        # No filters: only the pager's parameters (a misspelled `limt=` is a 400, as on the other lists).
        validated(QueryFilterSerializer, request.query_params)
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.revisions_for(selectors.session_get(self.kwargs["session_id"],
                                                                project=self.request.auth.project_id))


class RevisionRevertApi(ApiView):
    @extend_schema(tags=["history"], operation_id="revision_revert", request=RevertInputSerializer,
                   parameters=[IF_MATCH, ETAG_HEADER],
                   responses={200: ContextWriteOutputSerializer, **errors(400, 404, 412, 413, 415, 423, 428)},
                   description="Restore the snapshot as it was at `version`, as a new revision. If-Match (or "
                               "the body's `version`) is the *current* version you read.")
    def post(self, request, session_id: str, version: int):
        data = validated(RevertInputSerializer, request.data)
        session = selectors.session_get(session_id, project=request.auth.project_id)
        session = services.snapshot_revert(
            session=session, to_version=version,
            expected_version=expected_version(request, data.get("version"), session=session),
            reason=data["reason"],
            actor=services.Actor.for_api_key(request.auth), source=Revision.Source.API)
        return context_response(request, session)
