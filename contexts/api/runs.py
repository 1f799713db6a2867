"""/api/v1/sessions/{id}/runs and /api/v1/runs/{id}: the context updates, their cost and outcome."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from .. import selectors
from .http import ApiListView, ApiView, validated
from .openapi import errors
from .pagination import RunPagination
from .serializers import QueryFilterSerializer, RunOutputSerializer


class SessionRunListApi(ApiListView):
    serializer_class = RunOutputSerializer
    pagination_class = RunPagination

    @extend_schema(tags=["runs"], operation_id="runs_list",
                   responses={200: RunOutputSerializer(many=True), **errors(400, 404)},
                   description="The session's context updates, newest first, with their cost and outcome.")
    def get(self, request, *args, **kwargs):
        # No filters: only the pager's parameters (a misspelled `limt=` is a 400, as on the other lists).
        validated(QueryFilterSerializer, request.query_params)
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.runs_for(selectors.session_get(
            self.kwargs["session_id"], project=self.request.auth.project_id)).select_related("session")


class RunApi(ApiView):
    @extend_schema(tags=["runs"], operation_id="run_get", responses={200: RunOutputSerializer, **errors(404)},
                   description="One context update: status, extractor, model, tokens, latency, error.")
    def get(self, request, run_id):
        return Response(RunOutputSerializer(selectors.run_get(run_id, project=request.auth.project_id)).data)
