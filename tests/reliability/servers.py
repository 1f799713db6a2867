"""Real servers for tests: a gunicorn process serving the test database (persistent connections), and a
redis-server of a test's own (so stopping or restarting it disturbs nobody)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from tests.extraction.workers import STARTUP_TIMEOUT, database_url

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(settings_dict: dict, **extra: str) -> dict[str, str]:
    """Environment for a subprocess that must use this test run's database and settings."""
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}}
    if settings_dict["ENGINE"].endswith("sqlite3"):
        db = f"sqlite:///{settings_dict['NAME']}"
    else:
        db = database_url(settings_dict)
    env.update(DATABASE_URL=db, SECRET_KEY="insecure-key-for-tests-only", DEBUG="false",
               SECURE_SSL_REDIRECT="false", ALLOWED_HOSTS="127.0.0.1,localhost", LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


class Gunicorn:
    """gunicorn with one sync worker: every request goes through the same persistent DB connection.

    `threads` > 1 runs gthread workers instead, as in production.
    """

    def __init__(self, env: dict[str, str], *, workers: int = 1, threads: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, self.log_path = tempfile.mkstemp(prefix="gunicorn-test-", suffix=".log")
        self.log = os.fdopen(fd, "wb")
        self.process = subprocess.Popen(
            # With the deployed settings file (deploy/gunicorn.conf.py): among others no control socket, which every
            # gunicorn of the user would otherwise share ($HOME/.gunicorn/gunicorn.ctl), each new one unlinking the
            # last one's.
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
             "sessionctx.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers), "--worker-class", "gthread" if threads > 1 else "sync",
             "--threads", str(threads), "--timeout", "30", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> Gunicorn:
        """Wait for the health endpoint to answer. A server that does not is stopped before the error is raised:
        left running, an embedded one would go on sweeping this test run's database with its own settings (its
        in-process beat sends every pending run, of any later test, to its offline extractor)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2):
                    return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.1)
        output = self.output()
        self.stop()
        raise TimeoutError(f"gunicorn not ready after {timeout:.0f} s (stopped):\n{output}")

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()
        Path(self.log_path).unlink(missing_ok=True)


class RedisServer:
    """redis-server on a port of its own, that a test can kill (a crash), stop (SIGTERM, as a service manager does)
    and start again on the same port. `persistent`: an append-only file fsynced on every write, so queued tasks
    survive a restart (connections never do). `tls`: TLS only (rediss://, as managed Redis services offer it), with
    a certificate for 127.0.0.1 from a CA of the test's own; `url` names that CA (`untrusted_url` does not)."""

    def __init__(self, *, persistent: bool = False, tls: bool = False) -> None:
        self.port = free_port()
        self.persistent = persistent
        self.dir = tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen | None = None
        self.listen = ["--port", str(self.port)]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        if tls:
            import trustme  # only the TLS tests need it

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            files = {name: str(Path(self.dir, f"{name}.pem")) for name in ("ca", "cert", "key")}
            ca.cert_pem.write_to_path(files["ca"])
            cert.cert_chain_pems[0].write_to_path(files["cert"])
            cert.private_key_pem.write_to_path(files["key"])
            self.listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", files["cert"],
                           "--tls-key-file", files["key"], "--tls-ca-cert-file", files["ca"],
                           "--tls-auth-clients", "no"]
            self.untrusted_url = f"rediss://127.0.0.1:{self.port}/0"
            self.url = f"{self.untrusted_url}?ssl_ca_certs={files['ca']}"

    def start(self) -> RedisServer:
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", *self.listen, "--bind", "127.0.0.1", "--dir", self.dir, "--save", "", *durability],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return self
            except redis.RedisError:
                time.sleep(0.02)
        raise TimeoutError("redis-server did not start")

    def has_consumer(self) -> bool:
        """Whether a worker is connected and waiting for tasks (a client blocked in, or between, BRPOPs)."""
        try:
            clients = redis.Redis.from_url(self.url, socket_timeout=1).client_list()
        except redis.RedisError:
            return False
        return any(client.get("cmd") == "brpop" for client in clients)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
