"""DEBUG and the secret key, hosts, TLS, login brute force, Content-Security-Policy: production values unless DEBUG."""

from __future__ import annotations

from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_secret

__all__ = [
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "CSRF_FAILURE_VIEW", "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY", "X_FRAME_OPTIONS",
    "SECURE_REDIRECT_EXEMPT", "AXES_FAILURE_LIMIT", "AXES_COOLOFF_MINUTES", "AXES_COOLOFF_TIME",
    "AXES_LOCKOUT_PARAMETERS", "AXES_RESET_ON_SUCCESS", "AXES_HTTP_RESPONSE_CODE", "AXES_CLIENT_IP_CALLABLE",
    "AXES_LOCKOUT_CALLABLE", "CONTENT_SECURITY_POLICY", "DATA_UPLOAD_MAX_MEMORY_SIZE",
]

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE), or DEBUG=true for local development."
        )
    # Development only: DEBUG is on, so this key never protects real data.
    SECRET_KEY = "django-insecure-dev-only-key-never-used-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- TLS and headers (production values whenever DEBUG is off) ------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# A refused token inside an htmx action: a message in the page, not Django's CSRF page in a panel.
CSRF_FAILURE_VIEW = "contexts.web.views.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    __all__ += ["SECURE_PROXY_SSL_HEADER"]
# Health checks come from load balancers over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health(/live|/ready)?$"]

# --- Login brute force (django-axes, for /accounts/login/ and /admin/login/) -------------------------------------
# Failed logins are counted per username *and* client address: past the limit that pair is refused (429, the
# lockout page) until the cool-off has passed since its last attempt, before any password is hashed, so a
# locked-out attempt costs a few queries instead of the hasher's CPU. Another address, or another username from
# the same address, is not locked with it. Counts live in the database (per test database in tests).
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 15)
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_MINUTES < 1:
    # A cool-off of 0 would make django-axes lock out for good.
    raise ImproperlyConfigured("AXES_FAILURE_LIMIT and AXES_COOLOFF_MINUTES must be at least 1")
AXES_COOLOFF_TIME = AXES_COOLOFF_MINUTES / 60  # hours, as django-axes reads a number
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# The address REST_FRAMEWORK["NUM_PROXIES"] (api.py) trusts, the one the API throttle counts by (not django-ipware's
# rule).
AXES_CLIENT_IP_CALLABLE = "contexts.web.access.client_ip"
AXES_LOCKOUT_CALLABLE = "contexts.web.access.login_locked_out"

# --- Content-Security-Policy (django-csp) ----------------------------------------------------------------------------
# Self only: the staff pages and the admin have no inline script, handler or style (static/contexts/app.js does
# the scripting; htmx's own indicator styles are off in templates/contexts/base.html). NONCE appears in the header
# only on a page that asks for one: the API docs (templates/drf_spectacular/swagger_ui.html) for Swagger UI's
# inline start-up script and style; that page alone also allows Swagger UI's data: icons (contexts/web/middleware.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# Request bodies above this answer 413 (agents post message batches; see SESSIONCTX_MAX_*).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 1_048_576, minimum=1)
