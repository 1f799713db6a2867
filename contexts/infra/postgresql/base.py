"""Django's PostgreSQL backend as django-prometheus instruments it (connections, queries, their duration and
errors for /metrics), except that a request past its database deadline does not reconnect.

Without the latter, a request whose wait on a hung server was just cut off (contexts/infra/database.py) would open a
new connection, for CONN_HEALTH_CHECKS' replacement or its next query, and wait DB_CONNECT_TIMEOUT more before its
503. A reconnection refused here counts as neither a connection nor a connection error.
"""

from __future__ import annotations

from django_prometheus.db.backends.postgresql import base

from ..database import deadline_passed


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        if deadline_passed():
            raise self.Database.OperationalError("the request's database deadline has passed")
        return super().get_new_connection(conn_params)
