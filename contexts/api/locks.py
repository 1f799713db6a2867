"""/api/v1/sessions/{id}/locks: which snapshot fields staff have locked, and the extraction's pending proposals
for them; a write key can set the locks (with a reason)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from .. import selectors, services
from ..selectors.locks import locks_for, proposals_for
from ..services.locks import LOCKABLE_FIELDS, locks_set
from .http import ApiView, validated
from .openapi import errors
from .serializers import StrictCharField, StrictSerializer


class LocksInputSerializer(StrictSerializer):
    def get_fields(self):
        # Declared here, not as class attributes: a field called `fields` would hide the serializer's own.
        return {
            "fields": serializers.ListField(child=serializers.ChoiceField(choices=LOCKABLE_FIELDS), max_length=4,
                                            help_text="Exactly the fields to keep locked; [] unlocks all."),
            # Required even to unlock: each change of the locks is an audit row that says why.
            "reason": StrictCharField(max_length=2000, help_text="Why; kept with the change of the locks."),
            "expected_locks": serializers.ListField(
                child=serializers.ChoiceField(choices=LOCKABLE_FIELDS), max_length=4, required=False,
                help_text="Optional: the locked fields as you read them (GET .../locks). If someone changed the "
                          "locks since, nothing changes (409), so a change based on an old read never undoes "
                          "a lock an editor just took."),
        }


class LockSerializer(serializers.Serializer):
    field = serializers.CharField()
    reason = serializers.CharField()
    locked_by = serializers.CharField(source="actor")
    locked_at = serializers.DateTimeField(source="created_at")


class ProposalSerializer(serializers.Serializer):
    field = serializers.CharField()
    value = serializers.JSONField(help_text="What the extraction would have written (text, or a list of steps).")
    run_id = serializers.UUIDField(source="from_run_id", allow_null=True)
    created_at = serializers.DateTimeField()


class LocksOutputSerializer(serializers.Serializer):
    locks = LockSerializer(many=True)
    proposals = ProposalSerializer(many=True)


def _answer(session, *, may_read: bool = True):
    # A proposal is snapshot content (what the model would have written): a key that may not read gets none.
    return LocksOutputSerializer({"locks": locks_for(session),
                                  "proposals": proposals_for(session) if may_read else []}).data


class LocksApi(ApiView):
    @extend_schema(tags=["context"], operation_id="locks_get", responses={200: LocksOutputSerializer,
                                                                         **errors(400, 404)},
                   description="The fields staff have locked and, for each, the latest value an extraction "
                               "proposed instead of writing it.")
    def get(self, request, session_id: str):
        return Response(_answer(selectors.session_get(session_id, project=request.auth.project_id)))

    @extend_schema(tags=["context"], operation_id="locks_set", request=LocksInputSerializer,
                   responses={200: LocksOutputSerializer, **errors(400, 404, 409, 413, 415)},
                   description="Lock exactly these fields (`[]` unlocks all), with a reason. While a field is "
                               "locked, model-driven updates leave it as it is (what they would have written "
                               "becomes its proposal) and a write of yours that would change it answers 423. "
                               "A key without the read scope gets the locks and no proposals.")
    def put(self, request, session_id: str):
        data = validated(LocksInputSerializer, request.data)
        session = selectors.session_get(session_id, project=request.auth.project_id)
        expected = data.get("expected_locks")
        locks_set(session=session, fields=data["fields"], reason=data["reason"],
                  actor=services.Actor.for_api_key(request.auth), shown=None if expected is None else set(expected))
        return Response(_answer(session, may_read=request.auth.has_scope("read")))
