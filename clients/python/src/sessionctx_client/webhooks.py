"""Checking a webhook delivery from sessionctx (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature).

    event = verify_webhook(request.headers, request.body, secret="whsec_...")

The signature is HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>" with the endpoint's secret (the part
after "whsec_", base64-decoded); written with the standard library so the client keeps its one dependency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["WebhookVerificationError", "verify_webhook"]

# How far a delivery's timestamp may be from now: older ones could be replays.
TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """The delivery is not signed with this secret, was changed, or is too old or too new."""


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str, *,
                   tolerance: float = TOLERANCE_SECONDS, now: float | None = None) -> dict[str, Any]:
    """The delivered event (`id`, `type`, `session_id`, `created_at`, `data`) if the delivery is genuine; else
    WebhookVerificationError. De-duplicate on the returned `id` (= the webhook-id header): retries resend it."""
    lower = {name.lower(): value for name, value in headers.items()}
    try:
        msg_id, stamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far from now")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{sent_at}.".encode() + raw, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in signatures.split() if part.startswith("v1,")]
    # As bytes: compare_digest refuses a str beyond ASCII with a TypeError, and a forged header may hold one.
    if not any(hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "surrogatepass"))
               for candidate in offered):
        raise WebhookVerificationError("no signature matches this secret")
    return json.loads(raw)
