"""The database: DATABASE_URL, and what bounds a connection and a statement on SQLite and PostgreSQL."""

from __future__ import annotations

import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .core import BASE_DIR
from .env import env, env_float, env_int

__all__ = [
    "DATABASES", "DB_STATEMENT_TIMEOUT",
]

try:
    DATABASES = {
        "default": dj_database_url.parse(
            env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'sessionctx.sqlite3'}"),
            conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
except ValueError as exc:  # dj_database_url's UnknownSchemeError is one
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL ({exc}); e.g. "
                               "postgres://user:password@host:5432/name or sqlite:////path/to/db.sqlite3") from None
_db = DATABASES["default"]
# PostgreSQL only. A hung database must cost a request a bounded wait, never a thread: in web processes the server
# ends a statement after DB_STATEMENT_TIMEOUT (0: no limit) and contexts/infra/database.py ends a wait on a server
# that does not answer at all shortly after; migrations, commands and workers are not limited (sessionctx/wsgi.py
# turns it on). Everywhere, connecting gives up after DB_CONNECT_TIMEOUT, and keepalives and the TCP user timeout
# drop a connection whose peer is gone.
# PostgreSQL takes at most 2,147,483,647 ms: more made every statement of every request fail.
DB_STATEMENT_TIMEOUT = env_float("DB_STATEMENT_TIMEOUT", 5, minimum=0, maximum=2_147_483)
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
        # libpq reads 0 or less as "wait for ever" (refused here), and 1 as 2.
        "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 3, minimum=1, maximum=3600),
        "keepalives": 1,
        # The kernel refuses 0 or less, and then every connection failed as if the database were down.
        "keepalives_idle": env_int("DB_TCP_KEEPALIVES_IDLE", 10, minimum=1, maximum=32767),
        "keepalives_interval": env_int("DB_TCP_KEEPALIVES_INTERVAL", 5, minimum=1, maximum=32767),
        "keepalives_count": env_int("DB_TCP_KEEPALIVES_COUNT", 3, minimum=1, maximum=127),
        "tcp_user_timeout": round(env_float("DB_TCP_USER_TIMEOUT", 10, minimum=0, maximum=2_147_483) * 1000),
        **_url_options,  # what DATABASE_URL's query string sets wins
    }
    _db["TEST"] = {"NAME": env("TEST_DATABASE_NAME", f"test_sessionctx_{os.getpid()}")}
