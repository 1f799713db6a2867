"""Shared set-up for the extraction benchmarks: a dedicated PostgreSQL database, Django, the fake model.

BENCH_TREE names the checkout whose code runs (default: this one), so a bench can measure an older tree
side by side: its `contexts`, `sessionctx` and `tests` (the fake model, the worker helper) are imported from there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_TREE") or Path(__file__).resolve().parents[1]).resolve()
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sessionctx_bench"


def ensure_database(url: str) -> None:
    """Create the benchmark's database if it does not exist yet."""
    import psycopg

    server, _, name = url.rpartition("/")
    admin = f"{server}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(extra_env: dict[str, str]) -> str:
    """Point Django at the benchmark database (migrated) with `extra_env`; return the DATABASE_URL."""
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(url)
    os.environ.update({"DATABASE_URL": url, "SECRET_KEY": "bench-only-insecure-key", "DEBUG": "false",
                       "SECURE_SSL_REDIRECT": "false", "ALLOWED_HOSTS": "testserver,localhost",
                       "DJANGO_SETTINGS_MODULE": "sessionctx.settings", "LOG_LEVEL": "WARNING", **extra_env})
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection

    # PostgreSQL here runs without autovacuum: each earlier bench run left its deleted sessions, runs,
    # messages and revisions behind as dead rows that every index scan walked through (a run's queries
    # cost PostgreSQL about twice the CPU after a few dozen bench runs). Not timed.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return url


def bounded_model(delay: float = 0.0):
    """A fake model that behaves like a good one: keeps the previous context, adds to the summary and keeps it
    to the size its instructions ask for ("at most N characters")."""
    import re
    from dataclasses import replace

    from tests.fake_openai import answer, parse_prompt

    asked = re.compile(r"at most (\d+) characters")

    def respond(request):
        previous, messages = parse_prompt(request)
        system = next(m["content"] for m in request["messages"] if m["role"] == "system")
        summary_chars = int(asked.search(system).group(1))
        data = dict(previous)
        new = " ".join(content.split(".")[0][:80] for _, _, content in messages)
        data["summary"] = (previous.get("summary", "") + " " + new).strip()[-summary_chars:]
        if "plan" in data and not data["plan"]:
            data["plan"] = ["Collect requirements", "Draft the design", "Build it", "Test it", "Ship it"]
        return replace(answer(data), delay=delay)

    return respond
