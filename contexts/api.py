"""The agent REST API (/api/v1/...): one view per operation; each parses, calls a service or selector, serializes.

Authentication, scopes and throttling come from REST_FRAMEWORK settings (contexts.auth); every
error goes through contexts.exceptions.api_exception_handler and answers one JSON shape.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from redis.exceptions import RedisError
from rest_framework import exceptions as drf_exceptions
from rest_framework import generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from . import auth, readcache, selectors, services
from .exceptions import ApplicationError, InvalidInput, NotFound, PayloadTooLarge
from .models import ApiKey, Revision, SessionContext
from .prompting import render_prompt
from .serializers import (
    CONTEXT_FIELDS,
    ContextOutputSerializer,
    ContextWriteInputSerializer,
    ErrorSerializer,
    HealthOutputSerializer,
    MessageFilterSerializer,
    MessageOutputSerializer,
    MessagesPostInputSerializer,
    MessagesPostOutputSerializer,
    PromptOutputSerializer,
    ReasonInputSerializer,
    ResetInputSerializer,
    RevertInputSerializer,
    RevisionOutputSerializer,
    RunOutputSerializer,
    RunRefSerializer,
    SessionCreateInputSerializer,
    SessionFilterSerializer,
    SessionOutputSerializer,
    context_representation,
)
from .services import Actor

# --- plumbing -----------------------------------------------------------------------------------


class LimitedJSONParser(JSONParser):
    """JSON bodies up to DATA_UPLOAD_MAX_MEMORY_SIZE; larger ones answer 413.

    DRF reads the raw stream and so bypasses Django's own size check on request.body.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        meta = request.META if request is not None else {}
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if limit is not None and declared > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.",
                                  details={"max_bytes": limit})
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.",
                                  details={"max_bytes": limit})
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except ValueError as exc:
            raise drf_exceptions.ParseError(f"The body is not valid JSON: {exc}") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class PlainTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return (data if isinstance(data, str) else json.dumps(data)).encode(self.charset)


ERROR_DESCRIPTIONS = {
    400: "Invalid input (malformed JSON, wrong types, unknown fields, a bad session id).",
    401: "No API key, an unknown key or a revoked key.",
    403: "The API key lacks the scope (`read` or `write`) this request needs.",
    404: "No such session, revision or run.",
    409: "The request does not fit the session's state.",
    412: "The snapshot changed since you read it; `details.current_version` says where it is now.",
    413: "The request body is too large.",
    415: "The body is not JSON (send Content-Type: application/json).",
    428: "A write needs If-Match (or a `version` field) with the version you read.",
    429: "Too many requests for this key; retry after `Retry-After` seconds.",
    503: "A dependency (database, broker) is unreachable.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses: always 401, 403, 429, plus the given ones."""
    wanted = sorted({401, 403, 429, *codes})
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in wanted}


ETAG_HEADER = OpenApiParameter("ETag", str, OpenApiParameter.HEADER, response=[200],
                               description='The snapshot version as an entity tag, e.g. `"3"`.')
IF_MATCH = OpenApiParameter("If-Match", str, OpenApiParameter.HEADER,
                            description='The ETag you read (e.g. `"3"`); or send a `version` field in the body.')
SESSION_ID_DOC = "1-255 characters of A-Z a-z 0-9 . _ : @ -"


def _parse_etag(value: str) -> int:
    match = re.fullmatch(r'\s*(?:W/)?"?(\d{1,10})"?\s*', value)
    if match is None:
        raise InvalidInput('If-Match must be an ETag this API sent, e.g. "3".', code="invalid_precondition",
                           details={"if_match": value[:100]})
    return int(match.group(1))


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(request, body_version: int | None) -> int:
    """The version a write is based on: If-Match or the body's `version`; neither is 428."""
    header = request.headers.get("If-Match")
    from_header = _parse_etag(header) if header is not None else None
    if from_header is not None and body_version is not None and from_header != body_version:
        raise InvalidInput("If-Match and the body's version disagree.", code="invalid_precondition",
                           details={"if_match": from_header, "version": body_version})
    version = from_header if from_header is not None else body_version
    if version is None:
        raise ApplicationError(
            'This write needs the version you read: send If-Match: "<version>" or a "version" field.',
            code="precondition_required", status=428,
        )
    return version


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class ApiView(APIView):
    """Base of every API view: size-limited JSON bodies, errors always JSON."""

    parser_classes = [LimitedJSONParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # The URL converter takes anything up to the next slash so a bad id is a clear 400, not a 404.
        if "session_id" in kwargs:
            services.validate_session_id(kwargs["session_id"])

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 400 and isinstance(response, Response):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = "application/json"
            response.renderer_context = self.get_renderer_context()
        return response


class ApiListView(ApiView, generics.ListAPIView):
    def paginate_queryset(self, queryset):
        if getattr(self, "swagger_fake_view", False):
            return None
        return super().paginate_queryset(queryset)


def _context_response(session: SessionContext, *, status_code: int = 200) -> Response:
    data = ContextOutputSerializer(session).data
    return Response(data, status=status_code, headers={"ETag": etag(session.version)})


def _actor(request) -> Actor:
    return Actor.for_api_key(request.auth)


class NewestFirstPagination(CursorPagination):
    ordering = ("-updated_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class RevisionPagination(NewestFirstPagination):
    ordering = "-version"


class RunPagination(NewestFirstPagination):
    ordering = ("-created_at", "-id")


class TranscriptPagination(NewestFirstPagination):
    ordering = "seq"
    page_size = 100
    max_page_size = 500


# --- sessions -----------------------------------------------------------------------------------


class SessionListApi(ApiListView):
    serializer_class = SessionOutputSerializer
    pagination_class = NewestFirstPagination

    @extend_schema(tags=["sessions"], operation_id="sessions_list", parameters=[SessionFilterSerializer],
                   responses={200: SessionOutputSerializer(many=True), **errors(400, 404)},
                   description="Sessions, most recently changed first, with cursor pagination (`next`/`previous`).")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = validated(SessionFilterSerializer, self.request.query_params)
        return selectors.session_list(**filters)


class SessionApi(ApiView):
    @extend_schema(tags=["sessions"], operation_id="session_create", request=SessionCreateInputSerializer,
                   responses={200: ContextOutputSerializer, 201: ContextOutputSerializer, **errors(400, 413, 415)},
                   description="Create the session (201), or answer the existing one (200): idempotent. "
                               "Owners unknown so far are filled in; known ones are never overwritten.")
    def put(self, request, session_id: str):
        data = validated(SessionCreateInputSerializer, request.data)
        session, created = services.session_get_or_create(session_id=session_id, **data)
        return _context_response(session, status_code=201 if created else 200)

    @extend_schema(tags=["sessions"], operation_id="session_delete", responses={204: None, **errors(400, 404)},
                   description="Erase the session with its messages, revisions, runs and handoff events.")
    def delete(self, request, session_id: str):
        session = selectors.session_get(session_id)
        services.session_delete(session=session, actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- the snapshot -----------------------------------------------------------------------------------


def _not_modified(tags: str, version: int) -> bool:
    current = etag(version)
    return any(t.strip() in (current, f"W/{current}", "*") for t in tags.split(","))


# --- the cached read path ----------------------------------------------------------------------------

_JSON = JSONRenderer()
_ONE_TAG = re.compile(r'\s*(?:W/)?"(\d{1,10})"\s*')  # the usual If-None-Match: the one ETag the agent holds


def _cache_entry(row: dict) -> dict:
    return {readcache.VERSION: row["version"], readcache.CONTEXT_JSON: _JSON.render(context_representation(row)),
            readcache.PROMPT: render_prompt(row)}


def cached_read(request, session_id: str, field: str) -> HttpResponse | None:
    """GET .../context or .../context/prompt from the read cache; None leaves the request to the API view.

    The common case (a Bearer key with the read scope, under its throttle, an existing session) costs one
    Redis round trip. Anything else, every refusal included, is left to the DRF view, which answers it as
    always: there is one definition of each error. See contexts/readcache.py for why the cache is coherent.
    """
    if request.META.get("QUERY_STRING") or not readcache.enabled():
        return None
    scheme, _, raw_key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not raw_key or " " in raw_key:
        return None
    accept = request.META.get("HTTP_ACCEPT", "*/*")
    as_json = accept == "application/json"
    if accept not in ("*/*", "application/json") and not (field == readcache.PROMPT and accept == "text/plain"):
        return None
    try:
        services.validate_session_id(session_id)
    except InvalidInput:
        return None
    key_hash = services.api_key_hash(raw_key)
    throttle = auth.throttle_for_key(key_hash)
    tags = request.META.get("HTTP_IF_NONE_MATCH") if field == readcache.CONTEXT_JSON else None
    held = _ONE_TAG.fullmatch(tags) if tags else None
    try:
        found = readcache.lookup(key_hash, session_id, field, throttle=throttle,
                                 client_version=int(held.group(1)) if held else None)
    except RedisError:
        return None
    if found.key_revoked or (throttle and found.throttle_count > throttle[1]):
        return None
    key = found.key_entry
    if key is None:
        api_key = selectors.api_key_by_hash(key_hash)
        if api_key is None or not api_key.is_active:
            return None
        key = (api_key.pk, frozenset(api_key.scopes))
        readcache.api_key_store(key_hash, api_key.pk, api_key.scopes)
    if "read" not in key[1]:
        return None
    if found.first_use_this_minute:  # last_used_at is a hint for admins: at most one write a minute
        ApiKey.objects.filter(pk=key[0]).update(last_used_at=timezone.now())
    version, body = found.version, found.body
    if version is None:
        try:
            entry = readcache.context_fill(
                session_id, lambda: _cache_entry(selectors.context_get(session_id, CONTEXT_FIELDS)),
                lease=found.lease)
        except NotFound:
            return None
        version, body = entry[readcache.VERSION], entry[field]
    headers = {"ETag": etag(version), "Vary": "Accept"}
    if field == readcache.CONTEXT_JSON:
        if tags and _not_modified(tags, version):
            not_modified = HttpResponse(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
            del not_modified["Content-Type"]  # no body, so no type (as the API view answers)
            return not_modified
        return HttpResponse(body, content_type="application/json", headers=headers)
    if as_json:
        prompt = body.decode() if isinstance(body, bytes) else body
        return HttpResponse(_JSON.render({"prompt": prompt, "version": version}), content_type="application/json",
                            headers=headers)
    return HttpResponse(body, content_type="text/plain; charset=utf-8", headers=headers)  # UTF-8 as stored


class CachedReadApiView(ApiView):
    """A view whose GET is answered by cached_read when it can (its `cached_field`), else as usual."""

    cached_field: str

    def dispatch(self, request, *args, **kwargs):
        if request.method == "GET":
            response = cached_read(request, kwargs["session_id"], self.cached_field)
            if response is not None:
                return response
        return super().dispatch(request, *args, **kwargs)


class ContextApi(CachedReadApiView):
    cached_field = readcache.CONTEXT_JSON

    @extend_schema(
        tags=["context"], operation_id="context_get",
        parameters=[ETAG_HEADER, OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER,
                                                  description="An ETag you hold; 304 if it is still current.")],
        responses={200: ContextOutputSerializer, 304: OpenApiResponse(description="Not modified."),
                   **errors(400, 404)},
        description="The snapshot, its mode, status (e.g. `human` while a person owns the conversation) "
                    "and version.",
    )
    def get(self, request, session_id: str):
        tags = request.headers.get("If-None-Match")
        if tags:
            # What agents send before every model call: read the version alone and answer 304 when it is current.
            version = selectors.context_version(session_id)
            if _not_modified(tags, version):
                return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(version)})
        row = selectors.context_get(session_id, CONTEXT_FIELDS)
        return Response(context_representation(row), headers={"ETag": etag(row["version"])})

    @extend_schema(tags=["context"], operation_id="context_update", request=ContextWriteInputSerializer,
                   parameters=[IF_MATCH, ETAG_HEADER],
                   responses={200: ContextOutputSerializer, **errors(400, 404, 412, 413, 415, 428)},
                   description="Change some snapshot fields; the others stay. Needs the version you read.")
    def patch(self, request, session_id: str):
        return self._write(request, session_id, replace=False)

    @extend_schema(tags=["context"], operation_id="context_replace", request=ContextWriteInputSerializer,
                   parameters=[IF_MATCH, ETAG_HEADER],
                   responses={200: ContextOutputSerializer, **errors(400, 404, 412, 413, 415, 428)},
                   description="Replace the whole snapshot: fields not given become empty. Needs the version "
                               "you read.")
    def put(self, request, session_id: str):
        return self._write(request, session_id, replace=True)

    def _write(self, request, session_id: str, *, replace: bool) -> Response:
        data = validated(ContextWriteInputSerializer, request.data)
        expected = expected_version(request, data.pop("version", None))
        reason = data.pop("reason", "")
        session = selectors.session_get(session_id)
        common = {"session": session, "expected_version": expected, "source": Revision.Source.API,
                  "actor": _actor(request), "reason": reason}
        if replace:
            services.snapshot_replace(content=data, **common)
        else:
            services.snapshot_update(changes=data, **common)
        return _context_response(session)


PROMPT_FIELDS = ("mode", "summary", "goal", "plan", "progress", "handoff_note", "version")


class ContextPromptApi(CachedReadApiView):
    renderer_classes = [PlainTextRenderer, JSONRenderer]
    cached_field = readcache.PROMPT

    @extend_schema(
        tags=["context"], operation_id="context_prompt", parameters=[ETAG_HEADER],
        responses={(200, "text/plain"): OpenApiTypes.STR, (200, "application/json"): PromptOutputSerializer,
                   **errors(400, 404)},
        description="The `<session_context>` block for a system prompt: text/plain by default, JSON with "
                    "`Accept: application/json`. Empty when there is nothing to say.",
    )
    def get(self, request, session_id: str):
        row = selectors.context_get(session_id, PROMPT_FIELDS)
        prompt = render_prompt(row)
        headers = {"ETag": etag(row["version"])}
        if isinstance(request.accepted_renderer, JSONRenderer):
            # PromptOutputSerializer's shape, built directly (it is the schema's).
            return Response({"prompt": prompt, "version": row["version"]}, headers=headers)
        return Response(prompt, headers=headers)


class ContextResetApi(ApiView):
    @extend_schema(tags=["context"], operation_id="context_reset", request=ResetInputSerializer,
                   parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER,
                                                description="Optional: reset only if still at this version.")],
                   responses={200: ContextOutputSerializer, **errors(400, 404, 412, 413, 415)},
                   description="Empty the snapshot (a new version; the history keeps the old ones).")
    def post(self, request, session_id: str):
        data = validated(ResetInputSerializer, request.data)
        expected = None
        if request.headers.get("If-Match") is not None or data.get("version") is not None:
            expected = expected_version(request, data.get("version"))
        session = selectors.session_get(session_id)
        services.snapshot_reset(session=session, reason=data["reason"], actor=_actor(request),
                                expected_version=expected)
        return _context_response(session)


class ContextUpdateRequestApi(ApiView):
    @extend_schema(tags=["context"], operation_id="context_request_update", request=None,
                   responses={202: RunRefSerializer, **errors(400, 404)},
                   description="Queue a model-driven update from the messages not yet consumed. Requests made "
                               "while one is queued join it.")
    def post(self, request, session_id: str):
        session = selectors.session_get(session_id)
        run = services.extraction_request(session=session, trigger="api")
        return Response(RunRefSerializer({"run_id": run.id, "status": run.status}).data,
                        status=status.HTTP_202_ACCEPTED)


# --- history --------------------------------------------------------------------------------------


class RevisionListApi(ApiListView):
    serializer_class = RevisionOutputSerializer
    pagination_class = RevisionPagination

    @extend_schema(tags=["history"], operation_id="revisions_list",
                   responses={200: RevisionOutputSerializer(many=True), **errors(400, 404)},
                   description="Every version of the snapshot, newest first: who, why, when, what changed.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.revisions_for(selectors.session_get(self.kwargs["session_id"]))


class RevisionRevertApi(ApiView):
    @extend_schema(tags=["history"], operation_id="revision_revert", request=RevertInputSerializer,
                   parameters=[IF_MATCH, ETAG_HEADER],
                   responses={200: ContextOutputSerializer, **errors(400, 404, 412, 413, 415, 428)},
                   description="Restore the snapshot as it was at `version`, as a new revision. If-Match (or "
                               "the body's `version`) is the *current* version you read.")
    def post(self, request, session_id: str, version: int):
        data = validated(RevertInputSerializer, request.data)
        expected = expected_version(request, data.get("version"))
        session = selectors.session_get(session_id)
        services.snapshot_revert(session=session, to_version=version, expected_version=expected,
                                 reason=data["reason"], actor=_actor(request), source=Revision.Source.API)
        return _context_response(session)


# --- messages -------------------------------------------------------------------------------------


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
        session = selectors.session_get(self.kwargs["session_id"])
        return selectors.messages_for(session, after_seq=filters.get("after_seq", 0))

    @extend_schema(tags=["messages"], operation_id="messages_post", request=MessagesPostInputSerializer,
                   responses={202: MessagesPostOutputSerializer, **errors(400, 413, 415)},
                   description="Append a batch (creating the session if needed). Messages whose idempotency key "
                               "is already stored are not stored again. A batch ending with the assistant's "
                               "reply queues a context update when auto-update is on.")
    def post(self, request, session_id: str):
        data = validated(MessagesPostInputSerializer, request.data)
        messages = data.pop("messages")
        # One transaction: a refused batch leaves no half-created session behind, and the
        # queued update is only sent to the workers once the messages are committed.
        with transaction.atomic():
            session, created = services.session_get_or_create(session_id=session_id, **data)
            result = services.messages_append(session=session, messages=messages)
            update = None
            if result.completes_turn and settings.SESSIONCTX_AUTO_UPDATE:
                run = services.extraction_request(session=session, trigger="auto")
                update = {"run_id": run.id, "status": run.status}
        out = {"session_id": session.session_id, "created": created, "stored": result.stored,
               "duplicates": len(result.duplicates), "update": update}
        return Response(MessagesPostOutputSerializer(out).data, status=status.HTTP_202_ACCEPTED)


# --- handoff --------------------------------------------------------------------------------------


class HandoffApi(ApiView):
    @extend_schema(tags=["handoff"], operation_id="handoff_request", request=ReasonInputSerializer,
                   responses={200: ContextOutputSerializer, **errors(400, 404, 409, 413, 415)},
                   description="Ask for a human: the status becomes `handoff_requested` and the session joins "
                               "the staff queue. Asking again while waiting changes nothing.")
    def post(self, request, session_id: str):
        data = validated(ReasonInputSerializer, request.data)
        session = selectors.session_get(session_id)
        services.handoff_request(session=session, reason=data["reason"], actor=_actor(request))
        return _context_response(session)


# --- runs -----------------------------------------------------------------------------------------


class SessionRunListApi(ApiListView):
    serializer_class = RunOutputSerializer
    pagination_class = RunPagination

    @extend_schema(tags=["runs"], operation_id="runs_list",
                   responses={200: RunOutputSerializer(many=True), **errors(400, 404)},
                   description="The session's context updates, newest first, with their cost and outcome.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.runs_for(selectors.session_get(self.kwargs["session_id"])).select_related("session")


class RunApi(ApiView):
    @extend_schema(tags=["runs"], operation_id="run_get", responses={200: RunOutputSerializer, **errors(404)},
                   description="One context update: status, extractor, model, tokens, latency, error.")
    def get(self, request, run_id):
        return Response(RunOutputSerializer(selectors.run_get(run_id)).data)


# --- health ---------------------------------------------------------------------------------------


def _check_broker() -> None:
    from sessionctx.celery import app

    with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)


class HealthApi(ApiView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(tags=["health"], operation_id="health", auth=[],
                   responses={200: HealthOutputSerializer, 503: OpenApiResponse(ErrorSerializer,
                                                                                description=ERROR_DESCRIPTIONS[503])},
                   description="For load balancers: the database (and the broker, when configured) answer. "
                               "No authentication, no data.")
    def get(self, request):
        checks: dict[str, str] = {}
        failed: dict[str, str] = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # any failure means "not healthy"; the type is enough for operators
            failed["database"] = type(exc).__name__
        if settings.CELERY_BROKER_URL:
            try:
                _check_broker()
                checks["broker"] = "ok"
            except Exception as exc:
                failed["broker"] = type(exc).__name__
        else:
            checks["broker"] = "not configured (tasks run in-process)"
        if failed:
            raise ApplicationError(f"Unreachable: {', '.join(sorted(failed))}.", code="unavailable", status=503,
                                   details={"failed": failed})
        return Response({"status": "ok", "checks": checks})


# --- unknown /api/ paths --------------------------------------------------------------------------


@csrf_exempt
def api_not_found(request, path: str = ""):
    """Unknown /api/ paths answer the JSON error shape, not Django's HTML page."""
    return JsonResponse(NotFound(f"No API endpoint at {request.path}.", details={"path": request.path}).as_dict(),
                        status=404)
