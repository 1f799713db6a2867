"""/api/v1/sessions/{id}/context...: read the snapshot (JSON or prompt block), write it, reset it, ask for an
update. Reads come through representations.context_of (the read cache, else the database)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .. import selectors, services
from ..exceptions import InvalidInput
from ..extraction.policy import READ, context_refresh, parse_policy, update_if_due
from ..extraction.runs import extraction_request
from ..models import Revision, SessionContext
from .auth import still_authenticated
from .http import ApiView, PlainTextRenderer, etag, expected_version, not_modified, validated
from .openapi import ETAG_HEADER, IF_MATCH, IF_MATCH_OPTIONAL, errors
from .representations import context_of, context_representation, row_of, write_receipt
from .serializers import (
    ContextOutputSerializer,
    ContextReadQuerySerializer,
    ContextWriteInputSerializer,
    ContextWriteOutputSerializer,
    PromptOutputSerializer,
    ResetInputSerializer,
    RunRefSerializer,
)


def context_response(request, session: SessionContext, *, status_code: int = 200) -> Response:
    """A write's answer, with its ETag: the context as it now is, or its receipt for a key that may not read it."""
    row = row_of(session)
    body = context_representation(row) if request.auth.has_scope("read") else write_receipt(row)
    return Response(body, status=status_code, headers={"ETag": etag(session.version, session.pk)})


IF_NONE_MATCH = OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER,
                                 description="An ETag you hold; 304 if it is still current.")
FRESH_HEADER = OpenApiParameter(
    "X-Context-Fresh", str, OpenApiParameter.HEADER, response=[200],
    description="With `fresh=true`: `true` when the snapshot has taken in every message posted before the read, "
                "`false` when the wait ran out or the update did not take them (failed, changed nothing, model off).")


def _before_read(request, session_id: str) -> dict[str, str]:
    """What a read does before answering, by the update policy: with `fresh=true` it waits for an update of the
    unseen messages (and answers its X-Context-Fresh header, so the answer is then read from the database, not
    the cache); under an installation-wide idle:S policy it queues the update of a conversation gone quiet."""
    if validated(ContextReadQuerySerializer, request.query_params)["fresh"]:
        freshness = context_refresh(session=selectors.session_get(session_id, project=request.auth.project_id))
        if freshness.waited:
            # The key was checked when the wait began; a key revoked or expired meanwhile gets nothing of it.
            still_authenticated(request)
        return {"X-Context-Fresh": "true" if freshness.fresh else "false"}
    # Only when idle is the installation's policy: finding a session's own policy would cost every cached read a
    # database query; sessions with their own idle:S are the sweep's (within SWEEP_INTERVAL).
    if parse_policy(settings.SESSIONCTX_UPDATE_POLICY).kind == "idle":
        update_if_due(session=selectors.session_get(session_id, project=request.auth.project_id), event=READ,
                      trigger="idle")
    return {}


class ContextApi(ApiView):
    @extend_schema(
        tags=["context"], operation_id="context_get",
        parameters=[ContextReadQuerySerializer, ETAG_HEADER, IF_NONE_MATCH, FRESH_HEADER],
        responses={200: ContextOutputSerializer, 304: OpenApiResponse(description="Not modified."),
                   **errors(400, 404)},
        description="The snapshot, its mode, status (e.g. `human` while a person owns the conversation) "
                    "and version.",
    )
    def get(self, request, session_id: str):
        freshness = _before_read(request, session_id)
        entry = context_of(request.auth.project_id, session_id, cached=not freshness)
        tag = etag(entry.version, entry.session_pk)
        headers = {"ETag": tag, **freshness}
        if not_modified(request.headers.get("If-None-Match"), tag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        # Already rendered (and cached) as the JSON the serializer gives.
        return HttpResponse(entry.context_json, content_type="application/json", headers=headers)

    @extend_schema(tags=["context"], operation_id="context_update", request=ContextWriteInputSerializer,
                   parameters=[IF_MATCH, ETAG_HEADER],
                   responses={200: ContextWriteOutputSerializer, **errors(400, 404, 412, 413, 415, 423, 428)},
                   description="Change some snapshot fields; the others stay. Needs the version you read.")
    def patch(self, request, session_id: str):
        return self._write(request, session_id, replace=False)

    @extend_schema(tags=["context"], operation_id="context_replace", request=ContextWriteInputSerializer,
                   parameters=[IF_MATCH, ETAG_HEADER],
                   responses={200: ContextWriteOutputSerializer, **errors(400, 404, 412, 413, 415, 423, 428)},
                   description="Replace the whole snapshot: fields not given become empty. Needs the version "
                               "you read.")
    def put(self, request, session_id: str):
        return self._write(request, session_id, replace=True)

    def _write(self, request, session_id: str, *, replace: bool) -> Response:
        if replace and request.stream is None:
            # No body at all (a client that lost its JSON) would read as "every field empty": not what was meant.
            raise InvalidInput("PUT replaces the whole snapshot and needs it as a JSON body ({} empties it; PATCH "
                               "changes some fields). Nothing was changed.",
                               details={"fields": {"non_field_errors": ["A JSON object is required."]}})
        data = validated(ContextWriteInputSerializer, request.data)
        session = selectors.session_get(session_id, project=request.auth.project_id)
        common = {"session": session,
                  "expected_version": expected_version(request, data.pop("version", None), session=session),
                  "source": Revision.Source.API, "actor": services.Actor.for_api_key(request.auth),
                  "reason": data.pop("reason", "")}
        if replace:
            session = services.snapshot_replace(content=data, **common)
        else:
            session = services.snapshot_update(changes=data, **common)
        return context_response(request, session)


class ContextPromptApi(ApiView):
    renderer_classes = [PlainTextRenderer, JSONRenderer]

    @extend_schema(
        tags=["context"], operation_id="context_prompt",
        parameters=[ContextReadQuerySerializer, ETAG_HEADER, IF_NONE_MATCH, FRESH_HEADER],
        responses={(200, "text/plain"): OpenApiTypes.STR, (200, "application/json"): PromptOutputSerializer,
                   304: OpenApiResponse(description="Not modified."), **errors(400, 404, 406)},
        description="The `<session_context>` block for a system prompt: text/plain by default, JSON with "
                    "`Accept: application/json`. Empty when there is nothing to say.",
    )
    def get(self, request, session_id: str):
        freshness = _before_read(request, session_id)
        entry = context_of(request.auth.project_id, session_id, cached=not freshness)
        tag = etag(entry.version, entry.session_pk)
        headers = {"ETag": tag, "Vary": "Accept", **freshness}
        # The block changes only with the version, so an agent re-reading it each turn pays a 304 while idle.
        if not_modified(request.headers.get("If-None-Match"), tag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        if isinstance(request.accepted_renderer, JSONRenderer):
            return Response({"prompt": entry.prompt, "version": entry.version}, headers=headers)
        # Not a DRF Response: DRF drops the Content-Type of an empty body, and an empty prompt is a normal answer.
        return HttpResponse(entry.prompt, content_type="text/plain; charset=utf-8", headers=headers)


class ContextResetApi(ApiView):
    @extend_schema(tags=["context"], operation_id="context_reset", request=ResetInputSerializer,
                   parameters=[IF_MATCH_OPTIONAL, ETAG_HEADER],
                   responses={200: ContextWriteOutputSerializer, **errors(400, 404, 412, 413, 415, 423)},
                   description="Empty the snapshot (a new version; the history keeps the old ones).")
    def post(self, request, session_id: str):
        data = validated(ResetInputSerializer, request.data)
        session = selectors.session_get(session_id, project=request.auth.project_id)
        expected = None
        if request.headers.get("If-Match") is not None or data.get("version") is not None:
            expected = expected_version(request, data.get("version"), session=session)
        session = services.snapshot_reset(session=session, reason=data["reason"],
                                          actor=services.Actor.for_api_key(request.auth), expected_version=expected)
        return context_response(request, session)


class ContextUpdateRequestApi(ApiView):
    @extend_schema(tags=["context"], operation_id="context_request_update", request=None,
                   responses={202: RunRefSerializer, **errors(400, 404)},
                   description="Queue a model-driven update from the messages not yet consumed. Requests made "
                               "while one is queued join it.")
    def post(self, request, session_id: str):
        session = selectors.session_get(session_id, project=request.auth.project_id)
        run = extraction_request(session=session, trigger="api")
        run.refresh_from_db(fields=["status"])  # sent on commit, perhaps done by now: say where it stands
        return Response(RunRefSerializer({"run_id": run.id, "status": run.status}).data,
                        status=status.HTTP_202_ACCEPTED)
