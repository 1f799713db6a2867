"""Settings for sessionctx, read from environment variables (see README.md and .env.example)."""

from __future__ import annotations

import json
import math
import os
import re
from decimal import Decimal
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str = "") -> str:
    # Set but empty (`DATABASE_URL=` in an env file) means unset, as for the typed helpers below.
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name, default)


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

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "django_prometheus",
    "contexts",
]

MIDDLEWARE = [
    # First: every later middleware's log lines carry the request id, and the HTTP metrics time everything.
    "contexts.infra.requestid.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # CONTENT_SECURITY_POLICY below, on every answer (static files included).
    "contexts.web.middleware.ContentSecurityPolicyMiddleware",
    # Static files (htmx, CSS) straight from gunicorn: no separate file server is required.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "contexts.web.middleware.PrivatePagesMiddleware",
    "contexts.web.middleware.ViewerTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "contexts.infra.middleware.DatabaseUnavailableMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes requires: turns a login refused by its backend into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: a locked-out login is refused before ModelBackend hashes the password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "sessionctx.urls"
WSGI_APPLICATION = "sessionctx.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "contexts.web.context_processors.projects",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'sessionctx.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
_db = DATABASES["default"]
# PostgreSQL only. A hung database must cost a request a bounded wait, never a thread: in web processes the server
# ends a statement after DB_STATEMENT_TIMEOUT (0: no limit) and contexts/infra/database.py ends a wait on a server
# that does not answer at all shortly after; migrations, commands and workers are not limited (sessionctx/wsgi.py
# turns it on). Everywhere, connecting gives up after DB_CONNECT_TIMEOUT, and keepalives and the TCP user timeout
# drop a connection whose peer is gone.
DB_STATEMENT_TIMEOUT = env_float("DB_STATEMENT_TIMEOUT", 5)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # django-prometheus's wrapper of Django's backend: connections, queries and errors for /metrics.
    _db["ENGINE"] = "django_prometheus.db.backends.sqlite3"
    # Connections are not shared across threads on SQLite; persistent ones only waste handles.
    _db["CONN_MAX_AGE"] = 0
    _db["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue on the busy
        # timeout instead of failing with "database is locked" when upgrading a read lock.
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 30),
        # WAL lets readers (the web process) run while a writer (in-process tasks) commits.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file (not :memory:) so live servers, threads and subprocesses share it;
    # the pid keeps parallel runs on one machine apart.
    _db["TEST"] = {"NAME": str(BASE_DIR / f".pytest-db-{os.getpid()}.sqlite3")}
else:
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, as django-prometheus instruments it, except that a request past its database deadline
        # does not wait to reconnect.
        _db["ENGINE"] = "contexts.infra.postgresql"
    _url_options = _db.get("OPTIONS", {})
    _db["OPTIONS"] = {
        "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 3),
        "keepalives": 1,
        "keepalives_idle": env_int("DB_TCP_KEEPALIVES_IDLE", 10),
        "keepalives_interval": env_int("DB_TCP_KEEPALIVES_INTERVAL", 5),
        "keepalives_count": env_int("DB_TCP_KEEPALIVES_COUNT", 3),
        "tcp_user_timeout": round(env_float("DB_TCP_USER_TIMEOUT", 10) * 1000),
        **_url_options,  # what DATABASE_URL's query string sets wins
    }
    _db["TEST"] = {"NAME": env("TEST_DATABASE_NAME", f"test_sessionctx_{os.getpid()}")}

# Throttle counters and the read cache live here: give every web and worker process one shared cache (Redis) in
# production. A Redis that does not answer within the timeouts costs a request that long, then it goes on
# without the cache (reads from the database, throttle not counted).
CACHE_URL = env("CACHE_URL")
CACHE_SOCKET_TIMEOUT = env_float("CACHE_SOCKET_TIMEOUT", 0.5)
CACHE_CONNECT_TIMEOUT = env_float("CACHE_CONNECT_TIMEOUT", 0.5)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
         "OPTIONS": {"socket_timeout": CACHE_SOCKET_TIMEOUT, "socket_connect_timeout": CACHE_CONNECT_TIMEOUT}}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One date-time format on the staff pages and in the admin, in the viewer's zone (ViewerTimeZoneMiddleware).
FORMAT_MODULE_PATH = ["contexts.web.formats"]

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Serve from the app folders too, so `collectstatic` is an optimisation, not a requirement.
WHITENOISE_USE_FINDERS = True
# After `collectstatic`: hashed names, gzip, and a cache lifetime of a year (WhiteNoise's manifest storage).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "contexts.infra.static.ManifestWhenCollected"},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# --- Security (production values whenever DEBUG is off) ------------------------------------------
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
# The address REST_FRAMEWORK["NUM_PROXIES"] trusts, the one the API throttle counts by (not django-ipware's rule).
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
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 1_048_576)

# --- REST API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["contexts.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["contexts.api.auth.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "contexts.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["contexts.api.throttle.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env("API_THROTTLE_RATE", "6000/min")},
    # Client IPs are read from X-Forwarded-For only behind this many trusted proxies.
    # Unset means no proxy (0): DRF's own default (None) would trust any X-Forwarded-For a client sends.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "sessionctx API",
    "DESCRIPTION": "Session context for LLM-agent conversations: snapshots, messages, history, handoff.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "contexts.api.openapi.strict_request_bodies"],
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": "contexts.models.Status",
        "RunStatusEnum": "contexts.api.serializers.RunStatus",
    },
    "PATH_CONVERTER_OVERRIDES": {
        # contexts.snapshot.validate_session_id: not dots alone.
        "session_id": {"type": "string", "pattern": r"^(?!\.+$)[A-Za-z0-9._:@-]{1,255}$", "maxLength": 255},
    },
}

# --- Celery ----------------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
# No broker: tasks run in-process (the embedded default), still after the transaction commits.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# There, this many threads of each process run the tasks, so a request never waits for the model (0: the request
# runs them itself after its commit, as the tests do).
SESSIONCTX_INPROCESS_WORKERS = env_int("SESSIONCTX_INPROCESS_WORKERS", 2)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "sessionctx")
# A task is acknowledged after it ran, so a killed worker's task is redelivered to another.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the broker connection is lost finishes its work (killing it would only redo it). Its ack
# cannot reach Redis any more: contexts/infra/broker.py makes that a logged connection error rather than one that
# stops the worker, and the message delivered again after the visibility timeout finds its run done.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
if CELERY_BROKER_URL and CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "contexts.infra.broker:Transport"
# The model's timeout sets the task limits (a slow local model gets a long OPENAI_TIMEOUT and longer tasks with it):
# an extraction needs room for an answer and its repair, each perhaps after one timed-out try. The extractor starts
# no call that could end past the soft limit, so a soft limit below one call would fail every run at once.
OPENAI_TIMEOUT = env_float("OPENAI_TIMEOUT", 30.0)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", max(240, math.ceil(4 * OPENAI_TIMEOUT) + 30))
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", CELERY_TASK_SOFT_TIME_LIMIT + 60)
if CELERY_TASK_SOFT_TIME_LIMIT <= OPENAI_TIMEOUT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_SOFT_TIME_LIMIT ({CELERY_TASK_SOFT_TIME_LIMIT} s) leaves no room for a model call of "
        f"OPENAI_TIMEOUT ({OPENAI_TIMEOUT:g} s): every run would fail at once. Leave it unset to follow "
        f"OPENAI_TIMEOUT, or set it to at least {math.ceil(4 * OPENAI_TIMEOUT) + 30} (an answer and its repair, each "
        "perhaps tried twice)")
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must be above CELERY_TASK_SOFT_TIME_LIMIT")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis redelivers an unacknowledged task after this: above the hard limit plus backoff.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", max(900, CELERY_TASK_TIME_LIMIT + 120)),
    # How often a worker looks for unacknowledged tasks past that timeout (a killed worker's).
    "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": env_int("CELERY_UNACKED_RESTORE_THROTTLE", 10),
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup otherwise closes the database connection before and after every task, so each
# extraction paid for a new PostgreSQL backend; contexts/tasks.py closes only broken or expired ones
# (CONN_MAX_AGE, health checks), as Django does around each request.
CELERY_DB_REUSE_MAX = 1_000_000

# --- Model-driven extraction -------------------------------------------------------------------------
OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
OPENAI_BASE_URL = env("OPENAI_BASE_URL")
# (OPENAI_TIMEOUT is with the task limits above.) The client retries nothing itself: SESSIONCTX_MODEL_RETRIES does,
# where every try is counted in the run record.
if env_int("OPENAI_MAX_RETRIES", 0):
    raise ImproperlyConfigured("OPENAI_MAX_RETRIES is gone: the client's own retries were invisible in the run "
                               "record. Set SESSIONCTX_MODEL_RETRIES instead.")
SESSIONCTX_MODEL = env("SESSIONCTX_MODEL")
# How the answer is held to the snapshot's JSON schema: json_schema (OpenAI, llama.cpp, vLLM), json_object (the schema
# in the prompt), tools (a forced function call), or auto: json_schema, then tools, then json_object, moving on when
# the server answers that it does not support one, and remembering what worked for the life of the process.
SESSIONCTX_STRUCTURED_OUTPUT = env("SESSIONCTX_STRUCTURED_OUTPUT", "auto")
if SESSIONCTX_STRUCTURED_OUTPUT not in {"auto", "json_schema", "json_object", "tools"}:
    raise ImproperlyConfigured("SESSIONCTX_STRUCTURED_OUTPUT must be auto, json_schema, json_object or tools")
SESSIONCTX_INSTRUCTIONS = env("SESSIONCTX_INSTRUCTIONS")
SESSIONCTX_DEFAULT_MODE = env("SESSIONCTX_DEFAULT_MODE", "summary")
if SESSIONCTX_DEFAULT_MODE not in {"summary", "planning"}:
    raise ImproperlyConfigured("SESSIONCTX_DEFAULT_MODE must be 'summary' or 'planning'")
SESSIONCTX_AUTO_UPDATE = env_bool("SESSIONCTX_AUTO_UPDATE", True)
# When a posted turn queues a model-driven update (a session's own update_policy wins): every_turn,
# every_n_turns:N, idle:S (quiet for S seconds: the sweep or a read queues it) or tokens:T (unseen characters / 4 > T).
# The pattern is contexts.extraction.policy's (that module needs the apps loaded).
SESSIONCTX_UPDATE_POLICY = env("SESSIONCTX_UPDATE_POLICY", "every_turn")
if not re.fullmatch(r"every_turn|every_n_turns:[1-9]\d{0,5}|idle:[1-9]\d{0,6}|tokens:[1-9]\d{0,7}",
                    SESSIONCTX_UPDATE_POLICY):
    raise ImproperlyConfigured("SESSIONCTX_UPDATE_POLICY must be every_turn, every_n_turns:N, idle:S or tokens:T")
# GET .../context?fresh=true waits at most this many seconds for an update of the unseen messages.
SESSIONCTX_FRESH_WAIT = env_float("SESSIONCTX_FRESH_WAIT", 10.0)
# GET .../context and .../context/prompt answered from the Redis cache (CACHE_URL) when there is one;
# entries expire after the TTL, which bounds how stale a read can be if a writer dies between its
# commit and its cache delete (contexts/readcache.py).
SESSIONCTX_READ_CACHE = env_bool("SESSIONCTX_READ_CACHE", True)
SESSIONCTX_READ_CACHE_TTL = env_int("SESSIONCTX_READ_CACHE_TTL", 30)
# An active API key stays cached this long: the bound on honouring a deactivation made behind the service's
# back (an SQL UPDATE, a deleted row). Revocations through contexts.services are refused at once.
SESSIONCTX_API_KEY_CACHE_TTL = env_int("SESSIONCTX_API_KEY_CACHE_TTL", 60)
# Bounds on what a snapshot may hold (validated on every write, by anyone).
SESSIONCTX_MAX_SUMMARY_CHARS = env_int("SESSIONCTX_MAX_SUMMARY_CHARS", 4000)
# The size extraction keeps the summary to (both extractors; the model is asked for it). The summary is
# in every extraction prompt and in every agent's <session_context> block, so this is what a prompt costs
# once a conversation is long; the hard bound above is for what agents and staff write themselves.
SESSIONCTX_SUMMARY_CHARS = env_int("SESSIONCTX_SUMMARY_CHARS", 1200)
if not 0 < SESSIONCTX_SUMMARY_CHARS <= SESSIONCTX_MAX_SUMMARY_CHARS:
    raise ImproperlyConfigured("SESSIONCTX_SUMMARY_CHARS must be between 1 and SESSIONCTX_MAX_SUMMARY_CHARS")
SESSIONCTX_MAX_GOAL_CHARS = env_int("SESSIONCTX_MAX_GOAL_CHARS", 1000)
SESSIONCTX_MAX_PLAN_STEPS = env_int("SESSIONCTX_MAX_PLAN_STEPS", 50)
SESSIONCTX_MAX_STEP_CHARS = env_int("SESSIONCTX_MAX_STEP_CHARS", 500)
SESSIONCTX_MAX_MESSAGES_PER_POST = env_int("SESSIONCTX_MAX_MESSAGES_PER_POST", 200)
SESSIONCTX_MAX_MESSAGE_CHARS = env_int("SESSIONCTX_MAX_MESSAGE_CHARS", 100_000)
# Unseen messages above this many characters are consumed in sequential chunks.
SESSIONCTX_PROMPT_BUDGET_CHARS = env_int("SESSIONCTX_PROMPT_BUDGET_CHARS", 24_000)
SESSIONCTX_EXTRACTION_MAX_ATTEMPTS = env_int("SESSIONCTX_EXTRACTION_MAX_ATTEMPTS", 5)
# Transient model errors (429, 5xx, timeouts) are retried this many times inside one attempt, with
# exponential backoff and jitter (a call that timed out twice is not tried again). Worst case per model call:
# (retries + 1) x OPENAI_TIMEOUT + backoff; the extractor starts no call that could end past the soft time limit,
# so that bounds it. The defaults ride out a model endpoint that is down (refusing) for about a
# minute: 10 retries back off at least 0.5+1+2+4+8+10x5 = 65 s in all (jitter 0.5-1.5x).
SESSIONCTX_MODEL_RETRIES = env_int("SESSIONCTX_MODEL_RETRIES", 10)
SESSIONCTX_RETRY_BACKOFF = env_float("SESSIONCTX_RETRY_BACKOFF", 1.0)
SESSIONCTX_RETRY_BACKOFF_MAX = env_float("SESSIONCTX_RETRY_BACKOFF_MAX", 20.0)
# The longest answer asked of the model (max_tokens). Unset (0), it is derived from the snapshot bounds above (about
# 500 tokens in summary mode, 2,200 in planning mode with the defaults); lower it for a server with a small context.
SESSIONCTX_MAX_OUTPUT_TOKENS = env_int("SESSIONCTX_MAX_OUTPUT_TOKENS", 0)
# An answer that changes nothing although the messages carry information ends its run as `no_change`, the messages
# left unseen for the next run; after this many such runs on the same messages the next unchanged answer stands.
SESSIONCTX_UNCHANGED_RETRIES = env_int("SESSIONCTX_UNCHANGED_RETRIES", 2)
# Back-off (#18): after this many failed runs in a row (0: never), a session's automatic updates wait
# SESSIONCTX_BACKOFF_BASE seconds after the last failure, doubling with each further failure, at most
# SESSIONCTX_BACKOFF_MAX; the periodic sweep asks for the next update when the wait is over.
SESSIONCTX_BACKOFF_AFTER_FAILURES = env_int("SESSIONCTX_BACKOFF_AFTER_FAILURES", 3)
SESSIONCTX_BACKOFF_BASE = env_float("SESSIONCTX_BACKOFF_BASE", 60.0)
SESSIONCTX_BACKOFF_MAX = env_float("SESSIONCTX_BACKOFF_MAX", 3600.0)
if SESSIONCTX_BACKOFF_AFTER_FAILURES < 0 or not 0 < SESSIONCTX_BACKOFF_BASE <= SESSIONCTX_BACKOFF_MAX:
    raise ImproperlyConfigured("SESSIONCTX_BACKOFF_AFTER_FAILURES must be >= 0 and 0 < SESSIONCTX_BACKOFF_BASE <= "
                               "SESSIONCTX_BACKOFF_MAX")
# Cost (#19): USD per million input and output tokens for each model, as JSON ({"gpt-4o-mini": [0.15, 0.60]}). A run
# records its cost with the prices of the day it finished; a model not listed records no cost (null), not zero.
try:
    SESSIONCTX_MODEL_PRICES = {str(name): (Decimal(str(p_in)), Decimal(str(p_out)))
                               for name, (p_in, p_out) in json.loads(env("SESSIONCTX_MODEL_PRICES", "{}")).items()}
except (ValueError, TypeError, AttributeError, ArithmeticError):
    raise ImproperlyConfigured('SESSIONCTX_MODEL_PRICES must be JSON like {"gpt-4o-mini": [0.15, 0.60]}') from None
# Tokens (input + output) all runs may use per day (UTC), 0 = no limit; once reached, a run ends budget_exceeded
# without calling the model and its messages stay unseen for a run after midnight.
SESSIONCTX_DAILY_TOKEN_BUDGET = env_int("SESSIONCTX_DAILY_TOKEN_BUDGET", 0)
# A run consumes at most this many prompt-sized chunks; the rest goes to a follow-up run.
SESSIONCTX_MAX_CHUNKS_PER_RUN = env_int("SESSIONCTX_MAX_CHUNKS_PER_RUN", 4)
# A queued run not picked up this long after it was sent is sent again (by the next request for
# the session, the periodic sweep, a worker starting, or `manage.py update_context --pending`).
SESSIONCTX_EXTRACTION_RESEND_AFTER = env_int("SESSIONCTX_EXTRACTION_RESEND_AFTER", 120)
# PostgreSQL: a running attempt holds an advisory lock on its connection, so one whose worker died is taken
# over at once instead of after its lease (the hard time limit + 10%). Turn off behind a connection pooler in
# transaction mode (PgBouncer), where a session-level lock does not stay with one client.
SESSIONCTX_EXTRACTION_LIVENESS_LOCKS = env_bool("SESSIONCTX_EXTRACTION_LIVENESS_LOCKS", True)
# The handoff desk: while a person owns a conversation, posted turns queue no model-driven update unless this
# is on (what was said meanwhile is read when the person hands it back).
SESSIONCTX_EXTRACT_WHILE_HUMAN = env_bool("SESSIONCTX_EXTRACT_WHILE_HUMAN", False)
# The event feed (GET /api/v1/events): how long events are kept, and the longest long-poll.
SESSIONCTX_EVENT_RETENTION_DAYS = env_int("SESSIONCTX_EVENT_RETENTION_DAYS", 7)
SESSIONCTX_EVENTS_MAX_WAIT = env_int("SESSIONCTX_EVENTS_MAX_WAIT", 30)
# Retention: sessions untouched (no change, no message) for this many days are deleted by the periodic purge;
# 0 keeps them forever. Deletions go this many sessions per transaction, so no lock is held for long.
SESSIONCTX_RETENTION_DAYS = env_int("SESSIONCTX_RETENTION_DAYS", 0)
SESSIONCTX_DELETE_BATCH_SIZE = env_int("SESSIONCTX_DELETE_BATCH_SIZE", 200)
if SESSIONCTX_RETENTION_DAYS < 0 or SESSIONCTX_DELETE_BATCH_SIZE < 1:
    raise ImproperlyConfigured("SESSIONCTX_RETENTION_DAYS must be >= 0 and SESSIONCTX_DELETE_BATCH_SIZE >= 1")
# The staff queue highlights a conversation that has waited for a person longer than this many minutes.
SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES = env_int("SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES", 5)
# Webhooks: seconds between attempts (an attempt more than there are steps), the timeout of one attempt, and how
# many deliveries in a row may fail before the endpoint is disabled. Private addresses only for local tests.
try:
    SESSIONCTX_WEBHOOK_RETRY_SCHEDULE = [float(s) for s in env_list("SESSIONCTX_WEBHOOK_RETRY_SCHEDULE",
                                                                    "5,300,1800,7200,18000,36000,36000")]
except ValueError:
    raise ImproperlyConfigured("SESSIONCTX_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds") from None
SESSIONCTX_WEBHOOK_TIMEOUT = env_float("SESSIONCTX_WEBHOOK_TIMEOUT", 10.0)
SESSIONCTX_WEBHOOK_DISABLE_AFTER = env_int("SESSIONCTX_WEBHOOK_DISABLE_AFTER", 10)
SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = env_bool("SESSIONCTX_WEBHOOK_ALLOW_PRIVATE", False)
# The sweep is what gets a SIGKILLed worker's runs going again when no worker restarts, so it runs often (the README's
# takeover bound); a sweep message older than one interval is dropped, as the next one is on its way.
SWEEP_INTERVAL = env_int("SWEEP_INTERVAL", 10)
CELERY_BEAT_SCHEDULE = {
    "sweep-extractions": {"task": "contexts.sweep_extractions", "schedule": float(SWEEP_INTERVAL),
                          "options": {"expires": float(SWEEP_INTERVAL)}},
    # Sessions under an idle:S policy whose conversation has gone quiet get their update, and so do sessions
    # whose back-off after failed runs is over.
    "sweep-idle-updates": {"task": "contexts.sweep_idle_updates", "schedule": float(SWEEP_INTERVAL),
                           "options": {"expires": float(SWEEP_INTERVAL)}},
    "purge-events": {"task": "contexts.purge_events", "schedule": 3600.0},
    "purge-sessions": {"task": "contexts.purge_sessions", "schedule": 3600.0, "options": {"expires": 3600.0}},
    # Retries due later than a countdown should wait in the broker, and deliveries a dead worker or broker lost.
    "sweep-webhooks": {"task": "contexts.sweep_webhooks", "schedule": 30.0, "options": {"expires": 30.0}},
}

# /metrics (Prometheus text format) answers only with `Authorization: Bearer <METRICS_TOKEN>`; 404 while unset.
METRICS_TOKEN = env_secret("METRICS_TOKEN")
# A Celery worker's own figures (the model call latency), on a port of its own (0: none), behind the same token.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDRESS = env("WORKER_METRICS_ADDRESS", "127.0.0.1")
if WORKER_METRICS_PORT and not METRICS_TOKEN:
    raise ImproperlyConfigured("WORKER_METRICS_PORT needs METRICS_TOKEN (the port answers only with that token)")

# LOG_FORMAT=json: one JSON object a line (for a log collector); plain text otherwise. Both carry the request id.
LOG_FORMAT = env("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "contexts.infra.requestid.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                             "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # The model client's HTTP library logs every request at INFO (Celery sets the workers' root logger to
    # INFO): a line per extraction that the run record already holds (model, latency, tokens, error).
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"},
                "httpx2": {"level": "WARNING"}},
}

# Optional error reports to Sentry, from web processes and workers alike (contexts/infra/sentry.py): off while
# SENTRY_DSN is unset. Events carry the request id as a tag, and no personal data, request bodies or local variables.
SENTRY_DSN = env_secret("SENTRY_DSN")
if SENTRY_DSN:
    from contexts.infra import sentry as _sentry

    _sentry.init(SENTRY_DSN, environment=env("SENTRY_ENVIRONMENT"), release=env("SENTRY_RELEASE"),
                 traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0))
