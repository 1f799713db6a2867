"""Loaded by pytest before Django settings (see pyproject.toml): the test environment."""

import os

os.environ.setdefault("SECRET_KEY", "insecure-key-for-tests-only")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
# Tests start their own brokers and models where they need them; nothing leaks in from the shell.
for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SESSIONCTX_MODEL"):
    os.environ.pop(name, None)
os.environ.pop("CELERY_BROKER_URL", None)
# The embedded default runs tasks in threads; tests run them in the request, after its commit, unless they say.
os.environ.setdefault("SESSIONCTX_INPROCESS_WORKERS", "0")
