"""gunicorn settings of both production layouts (the web unit and the Procfile load them, `-c deploy/gunicorn.conf.py`).

A worker that exits stops counting toward the live gauges of /metrics when PROMETHEUS_MULTIPROC_DIR is set
(prometheus-client's multiprocess mode)."""

import os

# gunicorn's control socket (for its gunicornc tool, which nothing here uses) lives in $HOME/.gunicorn or
# $XDG_RUNTIME_DIR, shared by every gunicorn of the user: where that is not writable (a service user's home, a
# container) each start logged an ERROR line, which reaches Sentry when SENTRY_DSN is set. Reload and stop are signals.
control_socket_disable = True


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
