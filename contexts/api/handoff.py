"""/api/v1/sessions/{id}/handoff: an agent asks for a human."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema

from .. import selectors, services
from .context import context_response
from .http import ApiView, validated
from .openapi import ETAG_HEADER, errors
from .serializers import ContextWriteOutputSerializer, ReasonInputSerializer


class HandoffApi(ApiView):
    @extend_schema(tags=["handoff"], operation_id="handoff_request", request=ReasonInputSerializer,
                   parameters=[ETAG_HEADER],
                   responses={200: ContextWriteOutputSerializer, **errors(400, 404, 409, 413, 415)},
                   description="Ask for a human: the status becomes `handoff_requested` and the session joins "
                               "the staff queue. Asking again while waiting changes nothing.")
    def post(self, request, session_id: str):
        data = validated(ReasonInputSerializer, request.data)
        session = selectors.session_get(session_id, project=request.auth.project_id)
        session = services.handoff_request(session=session, reason=data["reason"],
                                           actor=services.Actor.for_api_key(request.auth))
        return context_response(request, session)
