"""Python client for the sessionctx agent API: SessionCtxClient (blocking) and AsyncSessionCtxClient (asyncio).

    from sessionctx_client import SessionCtxClient, VersionConflictError

    with SessionCtxClient("http://127.0.0.1:8000", "sck_...") as ctx:
        context = ctx.get_context("chat-42")
        ctx.update_context("chat-42", expected_version=context["version"], progress=["Dump the schema"])
"""

from .async_client import AsyncSessionCtxClient
from .client import SessionCtxClient
from .errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    SessionCtxError,
    VersionConflictError,
)
from .handoff import ahuman_replies, human_replies
from .webhooks import WebhookVerificationError, verify_webhook

# The version of the API this client speaks (the schema's info.version), which is also the package's version.
__version__ = "1.0.0"

__all__ = [
    "AsyncSessionCtxClient",
    "AuthenticationError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "SessionCtxClient",
    "SessionCtxError",
    "VersionConflictError",
    "WebhookVerificationError",
    "__version__",
    "ahuman_replies",
    "human_replies",
    "verify_webhook",
]
