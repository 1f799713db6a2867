"""Request bodies sent with Transfer-Encoding: chunked reach Django with a length.

Django reads exactly CONTENT_LENGTH bytes of a WSGI request and takes a missing one as an empty body, so a chunked
body (no Content-Length) read as `{}` and got "messages: This field is required.". gunicorn de-chunks the body and
says so with `wsgi.input_terminated` (the input ends where the body does); there the body is read here, at most one
byte over DATA_UPLOAD_MAX_MEMORY_SIZE so an oversized one still answers 413, and handed on with its length. A server
that does not de-chunk (Django's development server) leaves the header as it came: the API answers 411 for it
(contexts.api.http.ApiView).
"""

from __future__ import annotations

import io

from django.conf import settings


def is_chunked(environ) -> bool:
    """A body framed by Transfer-Encoding: chunked, without a Content-Length."""
    encodings = environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return "chunked" in encodings and not environ.get("CONTENT_LENGTH")


class ChunkedBodies:
    """WSGI middleware around Django's application."""

    def __init__(self, application) -> None:
        self.application = application

    def __call__(self, environ, start_response):
        if is_chunked(environ) and environ.get("wsgi.input_terminated"):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            stream = environ["wsgi.input"]
            body = stream.read() if limit is None else stream.read(limit + 1)
            environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        return self.application(environ, start_response)
