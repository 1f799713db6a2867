"""Real Celery worker processes for tests and benchmarks (Redis broker, PostgreSQL database)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
# How long a test server or worker may take to start: seconds on an idle machine, more on a busy 2-core CI machine.
STARTUP_TIMEOUT = 90.0


def database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class Worker:
    """`celery -A sessionctx worker` in its own process group, so SIGKILL takes the whole worker. It takes the
    queues a worker started without -Q takes (`queue` for updates, `queue`.webhooks for deliveries), or only those
    named in `only` (comma-separated), as the Procfile's workers each do."""

    def __init__(self, name: str, *, queue: str, env: dict[str, str], pool: str = "prefork",
                 concurrency: int = 1, log_level: str = "INFO", only: str | None = None) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"celery-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        # INFO unless a test says otherwise: the " ready." line (INFO) is how wait_ready knows it is up.
        full_env = {**os.environ, "SECRET_KEY": "insecure-key-for-tests-only", "DEBUG": "false",
                    "CELERY_QUEUE": queue, **env, "LOG_LEVEL": log_level}
        self.process = subprocess.Popen(
            [CELERY, "-A", "sessionctx", "worker", *(["-Q", only] if only else []), "-n", f"{name}-{os.getpid()}@%h",
             "--pool", pool, "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-l", "info"],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait for the worker to say it is ready. One that does not is killed before the error is raised: left
        running, it would take tasks and sweep the database of the tests that follow."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.1)
        output = self.output()
        self.kill()
        raise TimeoutError(f"worker {self.name} not ready after {timeout:.0f} s (killed):\n{output}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once: no warm shutdown, no ack."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def kill_pool_processes(self) -> list[int]:
        """SIGKILL the pool's child processes only (as the OOM killer would): the main process lives on."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)
        return [int(pid) for pid in children]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


class Beat(Worker):
    """`celery -A sessionctx beat`: the periodic sweep, as production runs it (one per deployment)."""

    def __init__(self, name: str, *, queue: str, env: dict[str, str]) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"celery-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.schedule = Path(tempfile.mkdtemp(prefix="celery-beat-")) / "schedule"
        # INFO at least: its "beat: Starting..." line says it is up.
        full_env = {**os.environ, "SECRET_KEY": "insecure-key-for-tests-only", "DEBUG": "false",
                    "CELERY_QUEUE": queue, **env, "LOG_LEVEL": "INFO"}
        self.process = subprocess.Popen(
            [CELERY, "-A", "sessionctx", "beat", "-s", str(self.schedule), "--pidfile=", "-l", "info"],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"beat {self.name} exited:\n{self.output()}")
            if "beat: Starting..." in self.output():
                return
            time.sleep(0.1)
        output = self.output()
        self.kill()
        raise TimeoutError(f"beat {self.name} not ready after {timeout:.0f} s (killed):\n{output}")

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.schedule.parent, ignore_errors=True)
