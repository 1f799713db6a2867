from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import honcho.environ
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _import_settings(**env):
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "SECRET_KEY_FILE"}}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", "import sessionctx.settings"], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)


def test_refuses_to_start_with_debug_off_and_no_secret_key():
    result = _import_settings(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_starts_with_debug_off_and_a_secret_key():
    assert _import_settings(DEBUG="false", SECRET_KEY="x" * 50).returncode == 0


def test_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("y" * 50)
    assert _import_settings(DEBUG="false", SECRET_KEY_FILE=str(secret)).returncode == 0


def test_check_deploy_passes_with_production_settings():
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG"}}
    env.update(SECRET_KEY="p" * 60 + "Q!7z", DEBUG="false", ALLOWED_HOSTS="ctx.example.com",
               SECURE_SSL_REDIRECT="true", SESSION_COOKIE_SECURE="true", CSRF_COOKIE_SECURE="true")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_copy_of_env_example_that_was_not_filled_in_refuses_to_start_for_want_of_a_secret_key():
    # The README installs .env.example as /etc/sessionctx/env "then fill it in": a placeholder that works as a key
    # would run production signed with a secret anyone can read here.
    # Read as honcho reads a .env file (make run-stack): it strips quotes and the spaces between them, so a JSON
    # value written bare there reached the settings as {gpt-4o-mini:[0.15,0.60]} and stopped the start.
    example = honcho.environ.parse((ROOT / ".env.example").read_text())
    assert example["DEBUG"] == "false"
    result = _import_settings(**example)
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr.strip().splitlines()[-1]
    example["SECRET_KEY"] = "k" * 40 + "Q!7z-filled-in"
    assert _import_settings(**example).returncode == 0


def test_bad_boolean_is_a_clear_error():
    result = _import_settings(DEBUG="maybe")
    assert result.returncode != 0 and "DEBUG must be a boolean" in result.stderr


def test_summary_size_above_the_hard_bound_is_a_clear_error():
    result = _import_settings(DEBUG="true", SESSIONCTX_SUMMARY_CHARS="5000", SESSIONCTX_MAX_SUMMARY_CHARS="4000")
    assert result.returncode != 0 and "SESSIONCTX_SUMMARY_CHARS must be between" in result.stderr


def test_an_empty_database_url_means_the_embedded_default():
    # `DATABASE_URL=` in an env file used to crash the import (UnknownSchemeError).
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; import django; django.setup(); "
                               "print(settings.DATABASES['default']['ENGINE'])"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DEBUG": "true", "DATABASE_URL": "", "DJANGO_SETTINGS_MODULE": "sessionctx.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("sqlite3")


def test_model_prices_that_are_not_two_numbers_per_model_are_a_clear_error():
    for bad in ('{"gpt-4o-mini": [0.15]}', '{"gpt-4o-mini": ["cheap", 1]}', "[0.15, 0.6]", "gpt-4o-mini=0.15"):
        result = _import_settings(DEBUG="true", SESSIONCTX_MODEL_PRICES=bad)
        assert result.returncode != 0 and "SESSIONCTX_MODEL_PRICES must be JSON like" in result.stderr, bad


def test_every_setting_a_part_defines_reaches_the_settings_module():
    # Each part of sessionctx/settings/ exports what __all__ names: a setting left out of it would vanish silently.
    import importlib
    import pkgutil

    import sessionctx.settings as package

    parts = [importlib.import_module(f"sessionctx.settings.{info.name}")
             for info in pkgutil.iter_modules(package.__path__)]
    exported = {name for part in parts for name in getattr(part, "__all__", ())}
    defined = {name for part in parts for name in vars(part) if name.isupper() and not name.startswith("_")}
    # Constants a part imports from a library (csp's NONCE, SELF) are not settings.
    import csp.constants

    assert defined - exported - set(vars(csp.constants)) == set()
    assert all(hasattr(package, name) for name in exported)


def test_a_lower_case_log_level_works_and_an_unknown_one_is_a_clear_error():
    assert _import_settings(DEBUG="true", LOG_LEVEL="debug").returncode == 0
    result = _import_settings(DEBUG="true", LOG_LEVEL="chatty")
    assert result.returncode != 0 and "LOG_LEVEL must be DEBUG, INFO" in result.stderr


def test_values_that_would_fail_later_or_deep_inside_a_library_name_their_variable():
    for name, bad, said in [("API_THROTTLE_RATE", "100 per minute", "API_THROTTLE_RATE must be requests per period"),
                            ("API_KEY_FAILURE_RATE", "sixty", "API_KEY_FAILURE_RATE must be refused keys per"),
                            # 0 would refuse every key not in the read cache, from every address, before any failure
                            ("API_KEY_FAILURE_RATE", "0/min", "API_KEY_FAILURE_RATE must be refused keys per"),
                            ("API_THROTTLE_RATE", "0/s", "API_THROTTLE_RATE must be requests per period"),
                            ("DATABASE_URL", "postgress://u:p@db:5432/x", "DATABASE_URL is not a database URL"),
                            ("SENTRY_DSN", "sentry.example.com/42", "SENTRY_DSN is not a Sentry DSN")]:
        result = _import_settings(DEBUG="true", **{name: bad})
        assert result.returncode != 0 and said in result.stderr.strip().splitlines()[-1], (name, result.stderr[-500:])
    assert _import_settings(DEBUG="true", API_THROTTLE_RATE="50000/hour").returncode == 0


def test_an_empty_prometheus_multiproc_dir_is_as_if_unset(tmp_path):
    # `PROMETHEUS_MULTIPROC_DIR=` in an env file made prometheus-client write its files into the working directory.
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.test import Client; "
                               "print(Client().get('/api/v1/health/live').status_code)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DEBUG": "true", "PROMETHEUS_MULTIPROC_DIR": "", "PYTHONPATH": str(ROOT),
             "DJANGO_SETTINGS_MODULE": "sessionctx.settings", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    assert result.returncode == 0 and result.stdout.strip().endswith("200"), result.stderr[-2000:]
    assert not list(tmp_path.glob("*.db")), list(tmp_path.iterdir())


def test_every_systemd_unit_never_gives_up_restarting_as_the_readme_says():
    import configparser

    for unit in sorted((ROOT / "deploy").glob("*.service")):
        parsed = configparser.ConfigParser(strict=False, interpolation=None)
        parsed.optionxform = str
        parsed.read(unit)
        assert parsed["Unit"].get("StartLimitIntervalSec") == "0", unit.name
        assert parsed["Service"].get("Restart") in ("always", "on-failure"), unit.name


def test_an_event_retention_that_would_empty_the_feed_or_stop_its_purge_is_a_clear_error():
    # 0 (which SESSIONCTX_RETENTION_DAYS reads as "off") or a negative number made the hourly purge delete every
    # event, with the webhook deliveries still pending for them; a period past the calendar made it stop with an
    # OverflowError every hour.
    for bad in ("0", "-1", "1000000"):
        result = _import_settings(DEBUG="true", SESSIONCTX_EVENT_RETENTION_DAYS=bad)
        assert result.returncode != 0, bad
        assert "SESSIONCTX_EVENT_RETENTION_DAYS must be" in result.stderr.strip().splitlines()[-1], bad
    assert _import_settings(DEBUG="true", SESSIONCTX_EVENT_RETENTION_DAYS="1").returncode == 0


def test_a_number_setting_that_is_not_finite_names_its_variable():
    # OPENAI_TIMEOUT=inf (meant as "no timeout") or nan stopped with a bare OverflowError/ValueError from deep inside
    # the Celery limits; other such settings were taken as they were.
    for name in ("OPENAI_TIMEOUT", "SESSIONCTX_WEBHOOK_TIMEOUT", "CACHE_SOCKET_TIMEOUT"):
        for bad in ("inf", "nan", "-Infinity"):
            result = _import_settings(DEBUG="true", **{name: bad})
            assert result.returncode != 0, (name, bad)
            assert f"{name} must be a finite number" in result.stderr.strip().splitlines()[-1], (name, bad)


@pytest.mark.parametrize("name", ["OPENAI_TIMEOUT", "SESSIONCTX_WEBHOOK_TIMEOUT", "CACHE_SOCKET_TIMEOUT",
                                  "CACHE_CONNECT_TIMEOUT"])
def test_a_timeout_of_zero_or_below_is_a_named_error_at_start(name):
    # 0 or -1 (meant as "no timeout") passed: OPENAI_TIMEOUT=0 failed every run as "cannot reach the model API"
    # without a request made; a negative cache timeout made every API request a 500 while readiness said 200.
    for bad in ("0", "-1"):
        result = _import_settings(DEBUG="true", **{name: bad})
        assert result.returncode != 0, (name, bad)
        assert f"{name} must be more than 0" in result.stderr.strip().splitlines()[-1], (name, bad)
    assert _import_settings(DEBUG="true", **{name: "0.5"}).returncode == 0


def test_a_worker_metrics_port_or_retry_schedule_that_cannot_work_is_a_named_error_at_start():
    # WORKER_METRICS_PORT=98080 (for 9808) let the worker run without its /metrics, one unnamed ERROR line in its log;
    # a retry step of inf failed the delivery's scheduling.
    for name, bad, says in (("WORKER_METRICS_PORT", "98080", "WORKER_METRICS_PORT must be at most 65535"),
                            ("WORKER_METRICS_PORT", "-1", "WORKER_METRICS_PORT must be at least 0"),
                            ("SESSIONCTX_WEBHOOK_RETRY_SCHEDULE", "5,inf", "each 0 or more"),
                            ("SESSIONCTX_WEBHOOK_RETRY_SCHEDULE", "5,-1", "each 0 or more")):
        result = _import_settings(DEBUG="true", METRICS_TOKEN="t" * 32, **{name: bad})
        assert result.returncode != 0 and says in result.stderr.strip().splitlines()[-1], (name, bad)
    assert _import_settings(DEBUG="true", METRICS_TOKEN="t" * 32, WORKER_METRICS_PORT="9808").returncode == 0


def test_a_cache_url_that_is_not_a_redis_url_is_a_clear_error():
    # It used to pass start-up and `check`; readiness then said 200 "degraded" while every API request answered 500
    # (redis-py's ValueError from the throttle and the key cache).
    for bad in ("redis//cache.internal:6379/1", "memcached://cache.internal:11211", "cache.internal:6379"):
        result = _import_settings(DEBUG="true", CACHE_URL=bad)
        assert result.returncode != 0, bad
        assert "CACHE_URL must be a Redis URL" in result.stderr.strip().splitlines()[-1], bad
    for good in ("redis://cache.internal:6379/1", "rediss://:pw@cache.internal:6380/1", "unix:///run/redis.sock"):
        assert _import_settings(DEBUG="true", CACHE_URL=good).returncode == 0, good


@pytest.mark.parametrize(("name", "value", "says"), [
    ("SWEEP_INTERVAL", "0", "SWEEP_INTERVAL must be at least 1"),  # celery beat would sweep without a pause
    ("MAX_REQUEST_BYTES", "-1", "MAX_REQUEST_BYTES must be at least 1"),  # every body would be a 413
    ("SESSIONCTX_MAX_PLAN_STEPS", "0", "SESSIONCTX_MAX_PLAN_STEPS must be at least 1"),  # every plan refused
    ("SESSIONCTX_MAX_MESSAGE_CHARS", "0", "SESSIONCTX_MAX_MESSAGE_CHARS must be at least 1"),
    ("SESSIONCTX_EVENTS_MAX_WAIT", "-5", "SESSIONCTX_EVENTS_MAX_WAIT must be at least 0"),
    ("SESSIONCTX_MAX_CHUNKS_PER_RUN", "0", "SESSIONCTX_MAX_CHUNKS_PER_RUN must be at least 1"),  # no run takes any
    ("SESSIONCTX_PROMPT_BUDGET_CHARS", "0", "SESSIONCTX_PROMPT_BUDGET_CHARS must be at least 1"),
    ("NUM_PROXIES", "-1", "NUM_PROXIES must be at least 0"),  # DRF would index the forwarded-for list from the end
    ("SESSIONCTX_MODEL_PRICES", '{"m": [-0.15, 0.6]}', "every price must be a number of USD, 0 or more"),
    ("SESSIONCTX_MODEL_PRICES", '{"m": ["NaN", 0.6]}', "every price must be a number of USD, 0 or more"),
    # Redis refuses a key cached for 0 s; each refusal set the process off Redis for a second, throttle and read
    # cache with it, request after request.
    ("SESSIONCTX_API_KEY_CACHE_TTL", "0", "SESSIONCTX_API_KEY_CACHE_TTL must be at least 1"),
    # Every run failed "after 0 attempts", or "after 0 tries" without calling the model.
    ("SESSIONCTX_EXTRACTION_MAX_ATTEMPTS", "0", "SESSIONCTX_EXTRACTION_MAX_ATTEMPTS must be at least 1"),
    ("SESSIONCTX_MODEL_RETRIES", "-1", "SESSIONCTX_MODEL_RETRIES must be at least 0"),
])
def test_a_size_interval_or_price_below_what_means_anything_is_a_named_error_at_start(name, value, says):
    result = _import_settings(DEBUG="true", **{name: value})
    assert result.returncode != 0 and says in result.stderr, result.stderr[-800:]


def test_zero_is_a_meaningful_read_cache_ttl_and_events_wait():
    assert _import_settings(DEBUG="true", SESSIONCTX_READ_CACHE_TTL="0", SESSIONCTX_EVENTS_MAX_WAIT="0").returncode == 0


def test_the_webhook_queue_follows_the_update_queue_and_may_not_be_the_same_one():
    named = subprocess.run([sys.executable, "-c", "import sessionctx.settings as s; "
                            "print([q.name for q in s.CELERY_TASK_QUEUES])"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, env={**os.environ, "DEBUG": "true", "CELERY_QUEUE": "ctx-eu",
                                                       "CELERY_WEBHOOK_QUEUE": ""})
    assert named.returncode == 0, named.stderr
    assert named.stdout.strip().splitlines()[-1] == "['ctx-eu', 'ctx-eu.webhooks']"
    result = _import_settings(DEBUG="true", CELERY_QUEUE="ctx-eu", CELERY_WEBHOOK_QUEUE="ctx-eu")
    assert result.returncode != 0
    assert "CELERY_WEBHOOK_QUEUE must differ from CELERY_QUEUE" in result.stderr


@pytest.mark.parametrize(("name", "value", "says"), [
    # Each passed start-up, and then broke requests or runs far from here.
    ("DB_STATEMENT_TIMEOUT", "3000000", "DB_STATEMENT_TIMEOUT must be at most"),  # every request a 500
    ("DB_TCP_KEEPALIVES_IDLE", "-1", "DB_TCP_KEEPALIVES_IDLE must be at least 1"),  # every request a 503
    ("DB_CONNECT_TIMEOUT", "0", "DB_CONNECT_TIMEOUT must be at least 1"),  # libpq: wait for ever
    ("CACHE_URL", "redis://127.0.0.1:6379/abc", "CACHE_URL: the path must be a database number"),  # database 0
    ("SESSIONCTX_RETRY_BACKOFF", "-1", "SESSIONCTX_RETRY_BACKOFF must be at least 0"),  # the first retry crashed
    ("SESSIONCTX_MODEL_PRICES", '{"fake-model": "12"}', "SESSIONCTX_MODEL_PRICES must be JSON like"),  # 1 and 2 USD
    ("CELERY_BROKER_URL", "notaurl", "CELERY_BROKER_URL must be a broker URL"),  # runs queued, never sent
    ("CELERY_BROKER_URL", "http://x", "'http' is no broker's scheme"),  # a KeyError traceback from the app
    ("OPENAI_TIMEOUT", "1e308", "OPENAI_TIMEOUT must be at most"),  # an OverflowError traceback
])
def test_a_value_that_would_break_the_service_later_stops_the_start_naming_the_variable(name, value, says):
    assert _import_settings(DEBUG="true", CELERY_BROKER_URL="redis+socket:///run/redis/redis.sock").returncode == 0
    env = {"DEBUG": "true", name: value}
    if name.startswith("DB_"):
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/postgres"
    result = _import_settings(**env)
    assert result.returncode != 0 and says in result.stderr.strip().splitlines()[-1], result.stderr[-500:]
