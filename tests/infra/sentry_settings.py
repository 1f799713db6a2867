"""The real settings (Sentry included, from SENTRY_DSN), plus a view and a task that fail on purpose."""

from sessionctx.settings import *  # noqa: F403

ROOT_URLCONF = "tests.infra.sentry_app"
CELERY_IMPORTS = ["tests.infra.sentry_app"]
