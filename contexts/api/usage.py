"""/api/v1/sessions/{id}/usage: the tokens and cost of a session's context updates."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from .. import selectors
from ..selectors.usage import session_usage
from .http import ApiView, validated
from .openapi import errors
from .serializers import NoQuerySerializer


class UsageOutputSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    runs = serializers.IntegerField(help_text="Finished runs (context updates) of the session, whatever their status.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8,
                                        help_text="USD at the prices of SESSIONCTX_MODEL_PRICES when each run "
                                                  "finished, as a decimal string.")
    unpriced_runs = serializers.IntegerField(help_text="Runs that used a model without a price: their tokens "
                                                       "count, their cost is not in cost_usd.")


class SessionUsageApi(ApiView):
    @extend_schema(tags=["runs"], operation_id="usage_get", responses={200: UsageOutputSerializer, **errors(400, 404)},
                   description="The session's total tokens and cost over all its context updates.")
    def get(self, request, session_id):
        validated(NoQuerySerializer, request.query_params)
        session = selectors.session_get(session_id, project=request.auth.project_id)
        usage = session_usage(session)
        return Response(UsageOutputSerializer({
            "session_id": session.session_id, "runs": usage.runs, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens,
            "cost_usd": usage.cost_usd, "unpriced_runs": usage.unpriced_runs}).data)
