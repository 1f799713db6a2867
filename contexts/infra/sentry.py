"""Optional error reports to Sentry (SENTRY_DSN; off while it is unset), from web processes and Celery workers.

sessionctx/settings/observability.py calls `init` once per process (web, worker and beat all load the settings).
Each event carries the request id as the `request_id` tag: the API request's id in a web process, the id the task
brought along in a worker (contexts/infra/requestid.py), so one id leads from the answer's `X-Request-ID` to the log
lines, the run record and the error report alike.

What an event may hold is kept small on purpose: no personal data (`send_default_pii` off: no cookies, no
Authorization header, no user or IP), no request bodies (they are conversations), and no local variables of the
frames (a frame's locals may hold a conversation or a key just as well).
"""

from __future__ import annotations

from typing import Any


def _tag_request_id(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    from .requestid import current_request_id

    request_id = current_request_id()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    return event


def init(dsn: str, *, environment: str = "", release: str = "", traces_sample_rate: float = 0.0) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release or None,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        traces_sample_rate=traces_sample_rate,
        before_send=_tag_request_id,
    )
