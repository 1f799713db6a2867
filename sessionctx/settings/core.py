"""Django itself: apps, middleware, templates, time zones, static files, login URLs."""

from __future__ import annotations

from pathlib import Path

from .env import env

__all__ = [
    "BASE_DIR", "INSTALLED_APPS", "MIDDLEWARE", "AUTHENTICATION_BACKENDS", "ROOT_URLCONF", "WSGI_APPLICATION",
    "TEMPLATES", "DEFAULT_AUTO_FIELD", "AUTH_PASSWORD_VALIDATORS", "LANGUAGE_CODE", "TIME_ZONE", "USE_I18N", "USE_TZ",
    "FORMAT_MODULE_PATH", "STATIC_URL", "STATICFILES_DIRS", "STATIC_ROOT", "WHITENOISE_USE_FINDERS", "STORAGES",
    "LOGIN_URL", "LOGIN_REDIRECT_URL", "LOGOUT_REDIRECT_URL",
]

BASE_DIR = Path(__file__).resolve().parent.parent.parent

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
    "contexts.web.middleware.NulInAddressMiddleware",
    # CONTENT_SECURITY_POLICY (security.py), on every answer (static files included).
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
# After `collectstatic`: hashed names, gzip, and a cache lifetime of ten years (WhiteNoise's manifest storage).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "contexts.infra.static.ManifestWhenCollected"},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
