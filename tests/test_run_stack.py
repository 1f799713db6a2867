"""`make run-stack`: gunicorn, the two Celery workers and beat under honcho, on this machine's PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from django.db import connection

from tests.extraction.workers import database_url
from tests.fake_openai import FakeOpenAI
from tests.services.webhook_receiver import Receiver

pytestmark = pytest.mark.worker

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def wait_until(check, *, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout} s for {what}")


@pytest.fixture
def fresh_database():
    """A database of its own (make run-stack migrates it), dropped afterwards."""
    if connection.vendor != "postgresql":
        pytest.skip("make run-stack needs PostgreSQL (set DATABASE_URL)")
    admin = database_url({**connection.settings_dict, "NAME": "postgres"})
    name = f"sessionctx_stack_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url({**connection.settings_dict, "NAME": name})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_make_run_stack_serves_the_api_its_worker_does_the_extraction_and_its_webhook_worker_the_delivery(
        fresh_database, tmp_path):
    server = redis.Redis.from_url(REDIS_URL)
    try:
        server.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    redis_base = f"redis://{server.connection_pool.connection_kwargs['host']}:" \
                 f"{server.connection_pool.connection_kwargs['port']}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FakeOpenAI() as fake, Receiver(204) as receiver:
        env = {**os.environ, "DATABASE_URL": fresh_database, "CELERY_BROKER_URL": f"{redis_base}/3",
               "CACHE_URL": f"{redis_base}/4", "CELERY_QUEUE": f"stack-{uuid.uuid4().hex[:8]}",
               "SECRET_KEY": "insecure-key-for-tests-only", "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1",
               "SECURE_SSL_REDIRECT": "false", "STATIC_ROOT": str(tmp_path / "static"),
               "BEAT_SCHEDULE": str(tmp_path / "celerybeat-schedule"), "WEB_CONCURRENCY": "1",
               "WORKER_CONCURRENCY": "1", "SESSIONCTX_MODEL": "fake-model", "OPENAI_API_KEY": "test",
               "OPENAI_BASE_URL": fake.url, "OPENAI_MAX_RETRIES": "0", "SESSIONCTX_WEBHOOK_ALLOW_PRIVATE": "true"}
        log = tmp_path / "stack.log"
        # The suite's own venv is already installed: -o keeps make from reinstalling it from the lock.
        with log.open("w") as out:
            stack = subprocess.Popen(["make", "-s", "-o", f"{VENV}/.installed", f"VENV={VENV}", "HOST=127.0.0.1",
                                      f"PORT={port}", "run-stack"], cwd=ROOT, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: log.read_text().count(" ready.") == 2 or stack.poll() is not None,
                       what="both workers to be ready", timeout=120)
            assert stack.poll() is None, log.read_text()
            wait_until(lambda: _answers(f"{base}/api/v1/health/live"), what="gunicorn to answer")
            key = subprocess.run([str(VENV / "bin/python"), "manage.py", "create_api_key", "stack-test"], cwd=ROOT,
                                 env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            headers = {"Authorization": f"Bearer {key}"}
            posted = requests.post(f"{base}/api/v1/sessions/stack-1/messages", headers=headers, timeout=10,
                                   json={"messages": [{"role": "user", "content": "Book the train to Lyon"},
                                                      {"role": "assistant", "content": "Booked for Friday."}]})
            assert posted.status_code == 202, posted.text
            run_id = posted.json()["update"]["run_id"]
            run = wait_until(lambda: _succeeded(f"{base}/api/v1/runs/{run_id}", headers),
                             what=f"the worker to finish run {run_id}")
            print(run)
            context = requests.get(f"{base}/api/v1/sessions/stack-1/context", headers=headers, timeout=10)
            assert context.status_code == 200 and context.json()["version"] >= 1, context.text
            assert fake.requests, "the worker never asked the model"
            # A hashed static name: collectstatic ran and WhiteNoise serves the manifest's files.
            page = requests.get(f"{base}/accounts/login/", timeout=10).text
            assert "/static/contexts/app." in page and "/static/contexts/app.css" not in page
            # A webhook goes out through the stack's webhook worker (the update worker does not take its queue).
            subprocess.run([str(VENV / "bin/python"), "manage.py", "shell", "-c",
                            "from contexts.services.webhooks import webhook_endpoint_create as create; "
                            f"create(url='{receiver.url}', event_types=['handoff.requested'])"],
                           cwd=ROOT, env=env, check=True, capture_output=True)
            asked = requests.post(f"{base}/api/v1/sessions/stack-1/handoff", headers=headers, timeout=10,
                                  json={"reason": "The customer asks for a person"})
            assert asked.status_code == 200, asked.text
            (delivered,) = receiver.wait_for(1, timeout=30)
            assert b'"handoff.requested"' in delivered.body
        finally:
            honcho = Path(f"/proc/{stack.pid}/task/{stack.pid}/children").read_text().split() \
                if stack.poll() is None else []
            for pid in honcho or [str(stack.pid)]:
                os.kill(int(pid), signal.SIGTERM)  # honcho stops web, worker and beat, then make ends
            try:
                stack.wait(60)
            finally:
                if stack.poll() is None:
                    os.killpg(stack.pid, signal.SIGKILL)
                print(log.read_text())
        output = log.read_text()
        assert stack.returncode in (0, 130, 143, 2), output
        for name in ("web.1", "worker.1", "webhooks.1", "beat.1"):
            assert f"{name} stopped" in output, output
        assert not _answers(f"{base}/api/v1/health/live")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _succeeded(url: str, headers: dict[str, str]) -> dict | None:
    body = requests.get(url, headers=headers, timeout=10).json()
    if body["status"] in ("failed", "budget_exceeded"):
        raise AssertionError(body)
    return body if body["status"] == "succeeded" else None


def test_make_run_stack_takes_its_settings_from_an_env_file_too(fresh_database, tmp_path):
    """README: the settings may be lines of a .env file (honcho's), for migrate and collectstatic as for the three
    processes. make run-stack refused them ("needs DATABASE_URL and CELERY_BROKER_URL"): it checked and migrated
    with the shell's environment alone."""
    server = redis.Redis.from_url(REDIS_URL)
    try:
        server.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = {"DATABASE_URL": fresh_database, "CELERY_BROKER_URL": REDIS_URL,
                "CELERY_QUEUE": f"stack-{uuid.uuid4().hex[:8]}", "SECRET_KEY": "insecure-key-for-tests-only",
                "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false",
                "STATIC_ROOT": str(tmp_path / "static"), "BEAT_SCHEDULE": str(tmp_path / "celerybeat-schedule"),
                "WEB_CONCURRENCY": "1", "WORKER_CONCURRENCY": "1"}
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    # Nothing of these in the environment: the file alone gives them.
    env = {name: value for name, value in os.environ.items()
           if name not in settings and name not in ("CACHE_URL", "TEST_DATABASE_NAME")}
    log = tmp_path / "stack.log"
    with log.open("w") as out:
        stack = subprocess.Popen(["make", "-s", "-o", f"{VENV}/.installed", f"VENV={VENV}", "HOST=127.0.0.1",
                                  f"PORT={port}", f"ENV_FILE={env_file}", "run-stack"], cwd=ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: " ready." in log.read_text() or stack.poll() is not None, what="the worker to be ready",
                   timeout=120)
        assert stack.poll() is None, log.read_text()
        wait_until(lambda: _answers(f"{base}/api/v1/health/live"), what="gunicorn to answer")
        ready = requests.get(f"{base}/api/v1/health/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok" and ready.json()["checks"]["broker"] == "ok", ready.text
        page = requests.get(f"{base}/accounts/login/", timeout=10).text
        assert "/static/contexts/app." in page and "/static/contexts/app.css" not in page  # collectstatic ran
    finally:
        honcho = Path(f"/proc/{stack.pid}/task/{stack.pid}/children").read_text().split() \
            if stack.poll() is None else []
        for pid in honcho or [str(stack.pid)]:
            os.kill(int(pid), signal.SIGTERM)
        try:
            stack.wait(60)
        finally:
            if stack.poll() is None:
                os.killpg(stack.pid, signal.SIGKILL)
            print(log.read_text())
