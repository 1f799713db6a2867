"""/api/v1/sessions/{id}/export and /api/v1/users/{user_id}/export: sessions as documents to keep or move."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from .. import selectors
from ..models import HandoffEvent, Message, Mode, Revision, Status
from ..selectors import governance
from ..services.locks import LOCKABLE_FIELDS
from .auth import still_authenticated
from .http import ApiView, validated
from .openapi import errors
from .serializers import _PY_SPACE, NoQuerySerializer

NDJSON = "application/x-ndjson"
# A user id as a path segment: not blank, no NUL or slash, and not dots alone (a client would resolve those).
USER_ID = OpenApiParameter(
    "user_id", {"type": "string", "maxLength": 255, "pattern": rf"^(?!\.+$)(?=[\s\S]*[^\x00{_PY_SPACE}])[^\x00/]+$"},
    OpenApiParameter.PATH, description="The end user's id, as sent in `user_id` when their sessions were created.")


class NDJSONRenderer(BaseRenderer):
    media_type = NDJSON
    format = "ndjson"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode() + b"\n"


# --- the document, for the schema (selectors.governance.session_document builds it) ------------------------------


class ExportedSessionSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    user_id = serializers.CharField()
    agent_id = serializers.CharField()
    team_id = serializers.CharField()
    mode = serializers.ChoiceField(choices=Mode.choices)
    status = serializers.ChoiceField(choices=Status.choices)
    summary = serializers.CharField()
    goal = serializers.CharField()
    plan = serializers.ListField(child=serializers.CharField())
    progress = serializers.ListField(child=serializers.CharField())
    handoff_note = serializers.CharField()
    handoff_reason = serializers.CharField()
    handoff_requested_at = serializers.DateTimeField(allow_null=True)
    assignee = serializers.CharField(allow_null=True, help_text="Username of the person who owns it, if any.")
    update_policy = serializers.CharField(help_text="The session's own update policy; empty: the server's default.")
    version = serializers.IntegerField()
    last_message_seq = serializers.IntegerField()
    cursor_seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ExportedMessageSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = serializers.CharField()
    idempotency_key = serializers.CharField(allow_null=True)
    author = serializers.CharField(allow_null=True, help_text="Username of the staff member who wrote it.")
    created_at = serializers.DateTimeField()


class ExportedRevisionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    source = serializers.ChoiceField(choices=Revision.Source.choices)
    actor = serializers.CharField()
    actor_user = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    snapshot = serializers.DictField()
    changed_fields = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


class ExportedProjectSettingsSerializer(serializers.Serializer):
    retention_days = serializers.IntegerField(allow_null=True, min_value=0,
                                              help_text="Days untouched before deletion; null: the server's.")
    daily_token_budget = serializers.IntegerField(allow_null=True, min_value=0,
                                                  help_text="Model tokens per UTC day; null: the server's.")


class ExportedLockSerializer(serializers.Serializer):
    field = serializers.ChoiceField(choices=[(name, name) for name in LOCKABLE_FIELDS])
    reason = serializers.CharField()
    actor = serializers.CharField(help_text="Who locked it, as revisions name their actor.")
    actor_user = serializers.CharField(allow_null=True, help_text="Username of the staff member who locked it.")
    created_at = serializers.DateTimeField()


class ExportedProposalSerializer(serializers.Serializer):
    field = serializers.ChoiceField(choices=[(name, name) for name in LOCKABLE_FIELDS])
    value = serializers.JSONField(help_text="What an extraction would have written to the locked field.")
    created_at = serializers.DateTimeField()


class ExportedHandoffEventSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=HandoffEvent.Kind.choices)
    actor = serializers.CharField(help_text="Who acted, as revisions name their actor.")
    actor_user = serializers.CharField(allow_null=True, help_text="Username of the staff member who acted.")
    note = serializers.CharField(allow_blank=True, help_text="The staff note or hand-back note, if any.")
    created_at = serializers.DateTimeField()


class ExportedRunsSerializer(serializers.Serializer):
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="Runs per status.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()


class SessionExportSerializer(serializers.Serializer):
    format = serializers.CharField(help_text=f"`{governance.EXPORT_FORMAT}`")
    project = serializers.CharField(help_text="The slug of the session's project; `import_sessions` imports into it "
                                              "unless told another.")
    project_name = serializers.CharField(help_text="The project's name, given to it where an import creates it.")
    project_settings = ExportedProjectSettingsSerializer(
        help_text="The project's settings, given to it where an import creates it (a project already there keeps "
                  "its own).")
    session = ExportedSessionSerializer()
    messages = ExportedMessageSerializer(many=True, help_text="Every message, by seq.")
    revisions = ExportedRevisionSerializer(many=True, help_text="Every revision, oldest first.")
    locks = ExportedLockSerializer(many=True, help_text="The fields staff locked, by field.")
    proposals = ExportedProposalSerializer(many=True, help_text="Pending proposals for locked fields, by field.")
    handoff_events = ExportedHandoffEventSerializer(
        many=True, help_text="The handoff timeline (requests, takes, hand-backs, closes), oldest first; not the "
                             "staff's own notes (kind `note`), which are for staff only.")
    runs = ExportedRunsSerializer(help_text="A summary of the model-driven updates (not imported).")


class SessionExportApi(ApiView):
    @extend_schema(tags=["sessions"], operation_id="session_export",
                   responses={200: SessionExportSerializer, **errors(400, 404)},
                   description="The session as one document: the snapshot, every message, every revision and a "
                               "summary of its runs. `manage.py import_sessions` reads it (one per line).")
    def get(self, request, session_id: str):
        validated(NoQuerySerializer, request.query_params)
        return Response(governance.session_document(selectors.session_get(session_id, project=request.auth.project_id)))


class UserExportApi(ApiView):
    # Only JSON Lines: a `?format=` or Accept naming anything else is refused (406), as DRF does.
    renderer_classes = [NDJSONRenderer]

    @extend_schema(tags=["users"], operation_id="user_export", parameters=[USER_ID],
                   responses={(200, NDJSON): OpenApiResponse(
                       SessionExportSerializer, description="JSON Lines: one session document per line (the same "
                                                            "as a session's export), oldest session first; "
                                                            "no line when the user has no session."),
                              # Errors are JSON, whatever the answer would have been.
                              **{(code, "application/json"): error for code, error in errors(400).items()}},
                   description="Every session of an end user, streamed as JSON Lines.")
    def get(self, request, user_id: str):
        validated(NoQuerySerializer, request.query_params)
        sessions = governance.sessions_of_user(user_id, project=request.auth.project_id)
        return StreamingHttpResponse(_lines(request, governance.session_documents(sessions)), content_type=NDJSON)


def _lines(request, documents: Iterator[dict]) -> Iterator[bytes]:
    """The documents as JSON Lines, each sent only while the key may still read it. An export of a user with many
    sessions takes a while: a key revoked (or expired) meanwhile gets no more of it, and a last line in the error
    shape says why it stopped (its 200 and headers are long gone)."""
    for document in documents:
        try:
            still_authenticated(request)
        except drf_exceptions.AuthenticationFailed as refused:
            code = refused.default_code if isinstance(refused.default_code, str) else "authentication_failed"
            yield json.dumps({"error": {"code": code, "message": f"The export stopped: {refused.detail}",
                                        "details": {}}}).encode() + b"\n"
            return
        yield json.dumps(document, ensure_ascii=False).encode() + b"\n"
