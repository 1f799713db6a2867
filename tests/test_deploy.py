"""The production layouts' gunicorn (Procfile and the systemd web unit) as a service user starts it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.extraction.workers import STARTUP_TIMEOUT
from tests.reliability.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "-c deploy/gunicorn.conf.py"


def _procfile_web() -> str:
    return next(line.split(":", 1)[1].strip() for line in (ROOT / "Procfile").read_text().splitlines()
                if line.startswith("web:"))


def test_both_layouts_load_the_gunicorn_settings():
    unit = (ROOT / "deploy" / "sessionctx-web.service").read_text()
    assert CONFIG in _procfile_web()
    assert re.search(r"^ExecStart=\S+/gunicorn .*" + re.escape(CONFIG), unit, re.MULTILINE)


def test_gunicorn_logs_no_error_where_its_home_cannot_be_written(tmp_path):
    """A service user's home (or a container's) may not be writable: gunicorn 25+ then logged 'Control server
    error' at every start, for a control socket nothing here uses."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"XDG_RUNTIME_DIR", "DATABASE_URL"}}
    env.update(HOME="/proc", DEBUG="true", BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1",
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", f"exec {_procfile_web()}"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health/live", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    output = log.read_text()
    assert "Listening at" in output
    assert "[ERROR]" not in output, output
