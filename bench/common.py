"""Shared parts of the benchmarks: the bench database, a gunicorn server, a load generator, reporting.

Every script configures the environment here *before* Django loads, so the script, gunicorn and the
Celery workers it starts all run with the same settings (bench.settings, DEBUG off, PostgreSQL).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
BENCH_DB = os.environ.get("BENCH_DATABASE", "sessionctx_bench_http")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
DURATION = float(os.environ.get("BENCH_DURATION", "10"))

# The chosen server config for 2 cores (see docs/benchmarks.md): gthread keeps client connections
# alive (sync workers close after every response), and 3 processes x 4 threads keep both cores busy
# while one thread waits on PostgreSQL, without the context switching of more threads.
GUNICORN_WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "3"))
GUNICORN_THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "4"))


def bench_env(db_name: str = BENCH_DB, *, tree: Path = ROOT, **extra: str) -> dict[str, str]:
    """Environment for the script, gunicorn and workers: production-like settings on the bench DB.

    `tree`: the checkout whose code runs (its `sessionctx`, `contexts` and `bench.settings`).
    """
    env = {
        k: v for k, v in os.environ.items()
        if k not in {"CELERY_BROKER_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SESSIONCTX_MODEL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=f"{PG_SERVER}/{db_name}",
        SECRET_KEY="bench-only-secret-key-not-used-anywhere-else-0123456789",
        DEBUG="false",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # The throttle still runs on every request (as in production, counters in Redis); the rate is
        # high so the benchmark measures serving, not refusing.
        API_THROTTLE_RATE=os.environ.get("BENCH_THROTTLE_RATE", "100000000/min"),
        CACHE_URL=os.environ.get("BENCH_CACHE_URL", f"{REDIS}/14"),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(tree),
    )
    env.update(extra)
    return env


def setup_django(db_name: str = BENCH_DB, *, recreate: bool = True, **extra_env: str) -> None:
    """Point this process at the bench database (created afresh unless `recreate` is off), migrate."""
    os.environ.update(bench_env(db_name, **extra_env))
    for name in ("CELERY_BROKER_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SESSIONCTX_MODEL"):
        if name not in extra_env:
            os.environ.pop(name, None)
    if recreate:
        recreate_database(db_name)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from django.db import connection

    connection.close()


def recreate_database(db_name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')


def drop_database(db_name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@dataclass(frozen=True)
class Tree:
    """A checkout of the project to measure: its name in the report and its directory."""

    name: str
    path: Path


def parse_trees(values: list[str] | None) -> list[Tree]:
    """`--tree NAME=PATH` options (in order; the first is the baseline of the ratios); none: this checkout."""
    if not values:
        return [Tree("this", ROOT)]
    trees = []
    for value in values:
        name, sep, path = value.partition("=")
        tree = Tree(name.strip(), Path(path).expanduser().resolve())
        if not sep or not re.fullmatch(r"[a-z0-9_]+", tree.name):
            raise SystemExit(f"--tree {value!r}: expected NAME=PATH, NAME of a-z, 0-9 and _")
        if not (tree.path / "manage.py").exists():
            raise SystemExit(f"--tree {value!r}: no manage.py in {tree.path}")
        trees.append(tree)
    if len({t.name for t in trees}) != len(trees):
        raise SystemExit("--tree: every tree needs its own NAME")
    return trees


def manage(tree: Path, env: dict[str, str], *args: str) -> str:
    """`manage.py ARGS` run from the tree's own checkout; its stdout."""
    proc = subprocess.run([PY, "manage.py", *args], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} in {tree} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, *, headers: dict | None = None, body: dict | None = None,
         timeout: float = 10) -> tuple[int, dict, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# --- processes ----------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        out = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(p) for p in out]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def rss_kib(pid: int) -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in KiB."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in {"VmRSS", "VmHWM"}:
                fields[name] = int(value.split()[0])
    return fields


class Gunicorn:
    """gunicorn serving sessionctx with bench.settings on a free loopback port (or another WSGI `app`)."""

    def __init__(self, env: dict[str, str], *, workers: int = GUNICORN_WORKERS, threads: int = GUNICORN_THREADS,
                 worker_class: str | None = None, port: int | None = None,
                 app: str = "sessionctx.wsgi:application", tree: Path = ROOT) -> None:
        self.env = env
        self.app = app
        self.tree = tree
        self.workers = workers
        self.threads = threads
        self.worker_class = worker_class or ("gthread" if threads > 1 else "sync")
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        fd, self.log_path = tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")
        self.log = os.fdopen(fd, "wb")

    @property
    def label(self) -> str:
        return f"gunicorn {self.worker_class} {self.workers}x{self.threads}"

    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.proc.pid, *children(self.proc.pid)]

    def __enter__(self) -> Gunicorn:
        cmd = [PY, "-m", "gunicorn", self.app, "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(self.workers), "--threads", str(self.threads),
               "--worker-class", self.worker_class, "--keep-alive", "30", "--backlog", "2048",
               "--log-level", "warning", "--chdir", str(self.tree)]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tree)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {Path(self.log_path).read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if http("GET", f"{self.base}/bench/bare", timeout=2)[0] == 200 and \
                        len(self.worker_pids()) >= self.workers:
                    # Let every worker import the app before the clock starts.
                    for _ in range(self.workers * 4):
                        http("GET", f"{self.base}/bench/bare", timeout=5)
                    return self
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not start in 30 s")

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    client: str = "wrk"
    cpu_us: float | None = None  # CPU of the measured processes (cpu_pids) per request, user + system
    redis_commands: float | None = None  # commands the Redis server ran per request (`redis_url`), whoever sent them

    def row(self, baseline: Result | None = None) -> str:
        ratio = f"{self.rps / baseline.rps:5.2f}" if baseline and baseline.rps else "   - "
        p50r = f"{self.p50_ms / baseline.p50_ms:5.2f}" if baseline and baseline.p50_ms else "   - "
        return (f"{self.name:<34} {self.rps:9.0f} {self.p50_ms:8.2f} {self.p99_ms:8.2f} {ratio:>9} {p50r:>9}"
                f" {self.errors:7d}")


HEADER = f"{'endpoint':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'rps/bare':>9} {'p50/bare':>9} {'errors':>7}"

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot read a latency from {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def load(name: str, url: str, *, headers: dict[str, str] | None = None, connections: int = CONNECTIONS,
         duration: float = DURATION, lua: str | None = None, method: str = "GET", body: str | None = None,
         warmup: float = 2.0, expect: tuple[int, ...] = (200,), cpu_pids: list[int] | None = None,
         redis_url: str | None = None) -> Result:
    """Closed-loop load: `connections` clients each sending the next request when the last is answered.

    With `cpu_pids`, also the CPU those processes spent per request during the timed part: on a shared
    machine, a cost that other people's load does not change the way it changes throughput. With `redis_url`,
    also the commands that Redis server ran per request meanwhile (its INFO counter: every client's, so run
    nothing else against it), i.e. the round trips a request makes to it.
    """
    if have_wrk():
        return _wrk(name, url, headers or {}, connections, duration, lua, method, body, warmup, cpu_pids,
                    redis_url)
    if lua:
        # Random sessions, ETags and version tracking live in wrk's Lua scripts.
        raise SystemExit("this benchmark needs wrk: apt-get install -y wrk (make bench installs it)")
    return _python_load(name, url, headers or {}, connections, duration, method, body, warmup, expect)


def redis_commands(url: str) -> int:
    """Commands the Redis server has run since it started (every database, every client)."""
    import redis

    with redis.Redis.from_url(url) as client:
        return int(client.info("stats")["total_commands_processed"])


def _wrk(name, url, headers, connections, duration, lua, method, body, warmup, cpu_pids=None,
         redis_url=None) -> Result:
    script = lua or ""
    if method != "GET" or body is not None:
        script = f"wrk.method = {json.dumps(method)}\n" + (f"wrk.body = {json.dumps(body)}\n" if body else "") + script
    # Count status codes in the Lua 'response' hook unless the script brings its own.
    if "response = function" not in script:
        script += _STATUS_LUA
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        # A slow answer is a latency to report, not a socket error: wrk's default timeout is 2 s.
        base = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", "--latency", "--timeout", "30s", "-s", f.name]
        for k, v in headers.items():
            base += ["-H", f"{k}: {v}"]
        if warmup:
            subprocess.run([*base, f"-d{max(1, int(warmup))}s", url], capture_output=True, text=True, check=True)
        commands_before = redis_commands(redis_url) if redis_url else 0
        cpu_before = cpu_seconds(cpu_pids or [])
        timed = [*base, f"-d{max(1, round(duration))}s", url]
        out = subprocess.run(timed, capture_output=True, text=True, check=True).stdout
        cpu_spent = cpu_seconds(cpu_pids or []) - cpu_before
        # Less the INFO call that read the counter before.
        commands = redis_commands(redis_url) - commands_before - 1 if redis_url else 0
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    statuses = {}
    m = re.search(r"STATUSES (\{.*\})", out)
    if m:
        statuses = {int(k): v for k, v in json.loads(m.group(1)).items()}
    return Result(name, rps, p50, p99, total, errors, statuses,
                  cpu_us=cpu_spent / total * 1e6 if cpu_pids and total else None,
                  redis_commands=commands / total if redis_url and total else None)


# Sums the status codes that each wrk thread counted into `counts` and prints them; keeps a
# script's own `setup`. Scripts with their own `response` hook append this alone.
STATUS_REPORT_LUA = """
local threads = {}
local orig_setup = setup
setup = function(thread)
  table.insert(threads, thread)
  if orig_setup then orig_setup(thread) end
end
done = function(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do all[k] = (all[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, string.format('"%d": %d', k, v)) end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\\n")
end
"""

_STATUS_LUA = """
counts = {}
response = function(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
""" + STATUS_REPORT_LUA


def _python_load(name, url, headers, connections, duration, method, body, warmup, expect) -> Result:
    """Fallback when wrk is not installed: threads with keep-alive connections (client-bound on 2 cores)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    lock = threading.Lock()
    start_at = time.monotonic() + warmup
    stop_at = start_at + duration

    def client():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine, mystat, myerr = [], {}, 0
        while (now := time.monotonic()) < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                myerr += 1
                continue
            if now >= start_at:
                mine.append((time.perf_counter() - t0) * 1000)
                mystat[status] = mystat.get(status, 0) + 1
                if status >= 400:
                    myerr += 1
        with lock:
            latencies.extend(mine)
            errors[0] += myerr
            for k, v in mystat.items():
                statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    n = len(latencies)
    if not n:
        return Result(name, 0, 0, 0, 0, errors[0], statuses, client="python")
    return Result(name, n / duration, statistics.median(latencies), latencies[min(n - 1, int(n * 0.99))], n,
                  errors[0], statuses, client="python")


def random_path_lua(pattern: str, count: int, *, offset: int = 0) -> str:
    """wrk script: each request asks for pattern % random index in [offset, offset + count)."""
    return (
        "local counter = 0\n"
        "init = function(args) math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0)) end\n"
        f"request = function() return wrk.format(nil, string.format({json.dumps(pattern)}, "
        f"math.random({offset}, {offset + count - 1}))) end\n"
    )


# --- reporting -------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem_gib:.1f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")


def banner(title: str, *, connections: int = CONNECTIONS, duration: float = DURATION) -> None:
    print(f"\n=== {title} ===")
    print(f"machine: {machine()}")
    print(f"load: {'wrk' if have_wrk() else 'python threads (install wrk: the API benchmarks need it)'}, "
          f"{connections} connections, {duration:.0f} s per endpoint", flush=True)
    one, five, _ = os.getloadavg()
    print(f"load average before the run: {one:.2f} (1 min), {five:.2f} (5 min)"
          + ("  <- the machine is busy: figures will be low and noisy" if one > 0.5 else ""), flush=True)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"
