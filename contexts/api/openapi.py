"""What the OpenAPI schema says of errors and headers, shared by every resource's views."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from .serializers import ErrorSerializer

ERROR_DESCRIPTIONS = {
    400: "Invalid input (malformed JSON, wrong types, unknown fields, a bad session id).",
    401: "No API key, an unknown key or a revoked key.",
    403: "The API key lacks the scope (`read` or `write`) this request needs.",
    404: "No such session, revision or run.",
    406: "An `Accept` header or `?format=` this call cannot answer.",
    409: "The request does not fit the session's state.",
    412: "The snapshot changed since you read it; `details.current_version` says where it is now.",
    413: "The request body is too large.",
    422: "An `idempotency_key` already used for a different message (`details.fields` says which); nothing stored.",
    423: "The write would change a field staff have locked (`details.locked_fields`); nothing changed.",
    415: "The body is not JSON (send Content-Type: application/json).",
    428: "A write needs If-Match (or a `version` field) with the version you read.",
    429: "Too many requests for this key; retry after `Retry-After` seconds.",
    503: "A dependency (database, broker) is unreachable.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses: always 401, 403, 429, plus the given ones."""
    wanted = sorted({401, 403, 429, *codes})
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in wanted}


# On every answer that carries the context or stands for it (a create's 201, a conditional read's 304).
ETAG_HEADER = OpenApiParameter("ETag", str, OpenApiParameter.HEADER, response=[200, 201, 304],
                               description='The snapshot version and a tag of the session, e.g. `"3-1a2b3c4d"`: '
                                           'an ETag of a session erased since never matches one created again '
                                           'under its id.')
# An ETag this API sent, or the version alone (the quotes may be left out): a strong one, as a weak W/"3" never
# matches a write (RFC 9110).
ETAG_PATTERN = r'^"?[0-9]{1,10}(-[0-9a-f]{8})?"?$'
IF_MATCH = OpenApiParameter("If-Match", {"type": "string", "pattern": ETAG_PATTERN}, OpenApiParameter.HEADER,
                            description='The ETag you read (e.g. `"3-1a2b3c4d"`) or its version (`"3"`); or send a '
                                        '`version` field in the body '
                                        '(both: both must be current).')
IF_MATCH_OPTIONAL = OpenApiParameter("If-Match", {"type": "string", "pattern": ETAG_PATTERN},
                                     OpenApiParameter.HEADER,
                                     description='Optional: reset only if still at this version (e.g. `"3"`).')


def strict_request_bodies(result, generator, request, public):
    """Schema postprocessing hook: request bodies refuse unknown fields (StrictSerializer answers 400 for one),
    the message batch is never empty (400 too), and a PUT of the context needs a body (a missing one is a 400,
    not an empty snapshot), so the schema says what the API refuses."""
    from .serializers import MessagesPostInputSerializer, StrictSerializer

    schemas = result.get("components", {}).get("schemas", {})
    names = {cls.__name__.removesuffix("Serializer") + "Request" for cls in _subclasses(StrictSerializer)}
    strict = names | {f"Patched{name}" for name in names}  # PATCH bodies get a component of their own
    for name in strict & set(schemas):
        schemas[name]["additionalProperties"] = False
    batch = schemas.get(MessagesPostInputSerializer.__name__.removesuffix("Serializer") + "Request")
    if batch is not None:
        batch["properties"]["messages"]["minItems"] = 1
    for path, operations in result.get("paths", {}).items():
        if path.endswith("/sessions/{session_id}/context") and "requestBody" in operations.get("put", {}):
            operations["put"]["requestBody"]["required"] = True
    return result


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found
