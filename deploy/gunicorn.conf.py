"""gunicorn settings the web unit loads (`-c deploy/gunicorn.conf.py`): a worker that exits stops counting toward
the live gauges of /metrics when PROMETHEUS_MULTIPROC_DIR is set (prometheus-client's multiprocess mode)."""

import os


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
