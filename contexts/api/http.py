"""HTTP plumbing every API view shares: size-limited JSON bodies, plain-text answers, ETag and If-Match."""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.utils.crypto import salted_hmac
from rest_framework import exceptions as drf_exceptions
from rest_framework import generics
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from ..exceptions import ApplicationError, InvalidInput, PayloadTooLarge, VersionConflict
from ..infra.chunked import is_chunked
from ..snapshot import validate_session_id


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
            data = json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except LookupError:
            # Django takes any charset Python knows, binary codecs too ("base64", "zlib"), which decode no text.
            raise drf_exceptions.ParseError(f"The body is not valid JSON: its charset ({encoding[:40]}) is not a "
                                            "text encoding; send UTF-8.") from None
        except ValueError as exc:
            raise drf_exceptions.ParseError(f"The body is not valid JSON: {exc}") from None
        except RecursionError:
            raise drf_exceptions.ParseError("The body is nested too deeply.") from None
        if _holds_lone_surrogate(data):
            # An escaped lone surrogate ("\ud800") is JSON syntax but no Unicode text: no database stores it and
            # no answer that echoes it (an unknown choice, an unknown field's name) can be encoded.
            raise drf_exceptions.ParseError("The body is not valid JSON: it holds a lone surrogate (\\ud800-\\udfff "
                                            "not in a pair), which is not Unicode text.")
        return data


_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_lone_surrogate(data) -> bool:
    # json.loads joins the halves of a pair into one character, so any surrogate left is a lone one. A loop, not
    # recursion: the body may be nested as deeply as the parser allows.
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


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


def incarnation(pk: int) -> str:
    """Which session an ETag is about. Erasing a session and creating one under the same id starts again at
    version 0: a tag of the version alone would then match (304, or a write let through) an answer about the
    erased conversation. The tag names the row (not its database id, which it does not reveal)."""
    return salted_hmac("sessionctx.etag", str(pk)).hexdigest()[:8]


def etag(version: int, pk: int) -> str:
    return f'"{version}-{incarnation(pk)}"'


def _parse_etag(value: str) -> tuple[int, str | None, bool]:
    """The version an If-Match names (an ETag this API sent, "3-1a2b3c4d", or its version alone: "3", 3), the
    session tag it carries if any, and whether it is weak (W/"3-...")."""
    match = re.fullmatch(r'\s*(W/)?"?(\d{1,10})(?:-([0-9a-f]{8}))?"?\s*', value)
    if match is None:
        raise InvalidInput('If-Match must be an ETag this API sent, e.g. "3-1a2b3c4d", or the version you read, '
                           'e.g. "3".', code="invalid_precondition", details={"if_match": value[:100]})
    return int(match.group(2)), match.group(3), match.group(1) is not None


def not_modified(if_none_match: str | None, current_etag: str) -> bool:
    """If-None-Match names the current ETag (or `*`): a 304 answers it."""
    if not if_none_match:
        return False
    return any(tag.strip() in (current_etag, f"W/{current_etag}", "*") for tag in if_none_match.split(","))


def expected_version(request, body_version: int | None, *, session) -> int:
    """The version a write is based on: If-Match or the body's `version`; neither is 428.

    `session`: as just read, for the 412 a weak If-Match or one about another session of that id gets.
    """
    current = session.version
    header = request.headers.get("If-Match")
    from_header, tag, weak = _parse_etag(header) if header is not None else (None, None, False)
    if weak:
        # If-Match compares strongly (RFC 9110, 13.1.1): a weak tag never matches, whatever it names.
        raise ApplicationError(f'If-Match compares ETags strongly, so a weak one ({header.strip()[:30]}) never '
                               f'matches: send it without W/.', code="version_conflict", status=412,
                               details={"expected_version": from_header, "current_version": current})
    if tag is not None and tag != incarnation(session.pk):
        # Read from a session of this id that was erased since: whatever its version, it is not this one.
        raise ApplicationError("If-Match names an ETag of an earlier session under this id, since erased: "
                               "re-read the context.", code="version_conflict", status=412,
                               details={"expected_version": from_header, "current_version": current})
    if from_header is not None and body_version is not None and from_header != body_version:
        # Both are preconditions and at most one names the current version: the one that does not fails (412).
        raise VersionConflict(expected=body_version if from_header == current else from_header, current=current)
    version = from_header if from_header is not None else body_version
    if version is None:
        raise ApplicationError('This write needs the version you read: send If-Match with the ETag you read or '
                               'a "version" field.', code="precondition_required", status=428)
    return version


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class AcceptNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, except that a blank `?format=` is refused rather than ignored, and an unknown one is a
    406 naming the formats the call answers (DRF answers 404, which reads as "no such session")."""

    def filter_renderers(self, renderers, format):
        chosen = [renderer for renderer in renderers if renderer.format == format]
        if not chosen:
            raise drf_exceptions.NotAcceptable(
                f"?format={format[:50]} is not one this call answers; it answers "
                f"{', '.join(renderer.format for renderer in renderers)} (or leave format out).")
        return chosen

    def select_renderer(self, request, renderers, format_suffix=None):
        name = self.settings.URL_FORMAT_OVERRIDE
        if name and name in request.query_params and not request.query_params[name].strip():
            raise drf_exceptions.ValidationError({name: ["May not be blank."]})
        return super().select_renderer(request, renderers, format_suffix)


class ApiView(APIView):
    """Base of every API view: size-limited JSON bodies, errors always JSON, session ids checked (400)."""

    parser_classes = [LimitedJSONParser]
    content_negotiation_class = AcceptNegotiation

    not_acceptable: drf_exceptions.NotAcceptable | None = None

    def perform_content_negotiation(self, request, force=False):
        # DRF negotiates before it authenticates; an unknown caller should learn it needs a key (401) before it
        # learns what we can render, so a 406 waits in initial() until the caller has passed.
        try:
            return super().perform_content_negotiation(request, force)
        except drf_exceptions.NotAcceptable as exc:
            self.not_acceptable = exc
            return JSONRenderer(), JSONRenderer.media_type

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.not_acceptable is not None:
            raise self.not_acceptable
        # `?status=active&status=human` would be read as its last value alone: a filter the caller did not ask for.
        repeated = sorted(name for name in request.query_params if len(request.query_params.getlist(name)) > 1)
        if repeated:
            raise drf_exceptions.ValidationError({name: ["Given more than once: give it once."] for name in repeated})
        if is_chunked(request.META):
            # Still chunked here: the server did not de-chunk it (contexts.infra.chunked), and Django would read
            # it as empty.
            raise ApplicationError("This server cannot read a chunked body (Transfer-Encoding: chunked): send it "
                                   "with a Content-Length.", code="length_required", status=411)
        # The URL converter takes anything up to the next slash so a bad id is a clear 400, not a 404.
        if "session_id" in kwargs:
            validate_session_id(kwargs["session_id"])

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
