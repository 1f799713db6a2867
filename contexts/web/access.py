"""Who may use the staff pages, and how a refusal reaches the person: one decorator, one message helper.

Also the two hooks django-axes calls for the login pages (settings.AXES_*): the client address and the lockout page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from axes.helpers import get_cool_off, get_failure_limit
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, reswap, retarget
from rest_framework.throttling import BaseThrottle

from contexts.exceptions import ApplicationError

VIEW_PERM = "contexts.view_sessioncontext"
HANDOFF_PERM = "contexts.handle_handoff"
EDIT_PERM = "contexts.edit_context"
# The ids of the elements that poll (the session page's live check, the menu badge, the queue).
POLLS = frozenset({"live", "waiting-badge", "handoff-queue"})
SIGNED_OUT = "You are signed out, so this page stopped updating: sign in again to go on (your typing is still here)."


def report(request: HttpRequest, exc: ApplicationError) -> int:
    """The one place a service refusal becomes a page message; returns the status to answer with."""
    messages.error(request, exc.message)
    return exc.status


def staff_view(perm: str | None = None) -> Callable:
    """Login required (htmx: the browser is sent to the login page); a missing permission answers 403."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if request.htmx and request.htmx.trigger in POLLS:
                    # Sent to the login page, the page would lose what the person is typing: stop polling, say so.
                    flash = render_to_string("contexts/base.html#flash", {"oob": True, "error": SIGNED_OUT}, request)
                    return reswap(HttpResponseStopPolling(flash), "none")
                if request.htmx:
                    page = request.htmx.current_url_abs_path or "/"
                    return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}")
                return redirect_to_login(request.get_full_path())
            needed = [VIEW_PERM] + ([perm] if perm else [])
            if not request.user.has_perms(needed):
                what = {EDIT_PERM: "edit or reset contexts", HANDOFF_PERM: "handle handoffs"}.get(
                    perm or "", "view session contexts")
                text = f"You do not have permission to {what}."
                if request.htmx:
                    response = render(request, "contexts/_messages.html", {"error": text}, status=403)
                    return reswap(retarget(response, "#flash"), "innerHTML")
                raise PermissionDenied(text)
            response = view(request, *args, **kwargs)
            # Partial and full page share a URL: caches must key on the htmx header.
            patch_vary_headers(response, ["HX-Request"])
            return response

        return wrapped

    return decorate


def client_ip(request: HttpRequest) -> str | None:
    """The client's address by DRF's NUM_PROXIES rule, so the login lockout and the API throttle agree on it."""
    return BaseThrottle().get_ident(request)


def login_locked_out(request: HttpRequest, original_response: HttpResponse | None,
                     credentials: dict[str, Any] | None) -> HttpResponse:
    """The page for a login refused by django-axes: 429 with the wait, as the API answers a rate limit."""
    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    context = {"minutes": minutes, "failure_limit": get_failure_limit(request, credentials)}
    response = render(request, "axes/lockout.html", context, status=429)
    if cool_off:
        # Every refused attempt starts the cool-off again (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT).
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    add_never_cache_headers(response)
    return response
