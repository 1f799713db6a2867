"""/api/v1/sessions/{id}/messages: the transcript, and an agent's new messages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from .. import selectors, services
from .http import ApiListView, validated
from .openapi import errors
from .pagination import TranscriptPagination
from .serializers import (
    MessageFilterSerializer,
    MessageOutputSerializer,
    MessagesPostInputSerializer,
    MessagesPostOutputSerializer,
)


class MessagesApi(ApiListView):
    serializer_class = MessageOutputSerializer
    pagination_class = TranscriptPagination

    @extend_schema(tags=["messages"], operation_id="messages_list", parameters=[MessageFilterSerializer],
                   responses={200: MessageOutputSerializer(many=True), **errors(400, 404)},
                   description="The transcript in order (by `seq`).")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = validated(MessageFilterSerializer, self.request.query_params)
        session = selectors.session_get(self.kwargs["session_id"], project=self.request.auth.project_id)
        return selectors.messages_for(session, after_seq=filters.get("after_seq", 0)).select_related("author")

    @extend_schema(tags=["messages"], operation_id="messages_post", request=MessagesPostInputSerializer,
                   responses={202: MessagesPostOutputSerializer, **errors(400, 413, 415, 422)},
                   description="Append a batch (creating the session if needed). Messages whose idempotency key "
                               "is already stored are not stored again. A batch ending with the assistant's "
                               "reply queues a context update when auto-update is on.")
    def post(self, request, session_id: str):
        data = validated(MessagesPostInputSerializer, request.data)
        posted = services.messages_post(session_id=session_id, project=request.auth.project_id, **data)
        if posted.update is not None:
            # Committed and sent by now, perhaps even done (no broker, no threads): say where it stands now.
            posted.update.refresh_from_db(fields=["status"])
        update = posted.update and {"run_id": posted.update.id, "status": posted.update.status}
        out = {"session_id": posted.session.session_id, "created": posted.created, "stored": posted.appended.stored,
               "duplicates": len(posted.appended.duplicates), "update": update}
        return Response(MessagesPostOutputSerializer(out).data, status=status.HTTP_202_ACCEPTED)
