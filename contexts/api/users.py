"""/api/v1/users/{user_id}: erasure of an end user's sessions (the right to erasure)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from .. import services
from ..services.governance import user_erase
from .exports import USER_ID
from .http import ApiView
from .openapi import errors


class DeletedCountsSerializer(serializers.Serializer):
    sessions = serializers.IntegerField()
    messages = serializers.IntegerField()
    revisions = serializers.IntegerField()
    runs = serializers.IntegerField()
    handoff_events = serializers.IntegerField()
    events = serializers.IntegerField()
    webhook_deliveries = serializers.IntegerField()
    locks = serializers.IntegerField()
    lock_changes = serializers.IntegerField()
    proposals = serializers.IntegerField()


class UserErasureOutputSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    deleted = DeletedCountsSerializer(help_text="Rows deleted, by kind; all zero when nothing was left.")


class UserApi(ApiView):
    @extend_schema(tags=["users"], operation_id="user_erase", parameters=[USER_ID],
                   responses={200: UserErasureOutputSerializer, **errors(400)},
                   description="Erase every session of an end user with its messages, revisions, runs, handoff "
                               "events and feed events; answers what was deleted. Idempotent: again, it answers "
                               "zeros. An audit record keeps the counts and a hash of the user id, no content.")
    def delete(self, request, user_id: str):
        record = user_erase(user_id=user_id, project=request.auth.project,
                            actor=services.Actor.for_api_key(request.auth))
        return Response({"user_id": user_id, "deleted": record.counts})
