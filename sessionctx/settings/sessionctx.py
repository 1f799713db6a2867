"""The product settings: the model (OPENAI_*) and SESSIONCTX_*: snapshot bounds, updates, retries, costs, webhooks."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured

from .env import env, env_bool, env_float, env_int, env_list, env_secret

__all__ = [
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_TIMEOUT", "SESSIONCTX_MODEL", "SESSIONCTX_STRUCTURED_OUTPUT",
    "SESSIONCTX_INSTRUCTIONS", "SESSIONCTX_DEFAULT_MODE", "SESSIONCTX_AUTO_UPDATE", "SESSIONCTX_UPDATE_POLICY",
    "SESSIONCTX_FRESH_WAIT", "SESSIONCTX_READ_CACHE", "SESSIONCTX_READ_CACHE_TTL", "SESSIONCTX_API_KEY_CACHE_TTL",
    "SESSIONCTX_MAX_SUMMARY_CHARS", "SESSIONCTX_SUMMARY_CHARS", "SESSIONCTX_MAX_GOAL_CHARS",
    "SESSIONCTX_MAX_PLAN_STEPS", "SESSIONCTX_MAX_STEP_CHARS", "SESSIONCTX_MAX_MESSAGES_PER_POST",
    "SESSIONCTX_MAX_MESSAGE_CHARS", "SESSIONCTX_PROMPT_BUDGET_CHARS", "SESSIONCTX_EXTRACTION_MAX_ATTEMPTS",
    "SESSIONCTX_MODEL_RETRIES", "SESSIONCTX_RETRY_BACKOFF", "SESSIONCTX_RETRY_BACKOFF_MAX",
    "SESSIONCTX_MAX_OUTPUT_TOKENS", "SESSIONCTX_UNCHANGED_RETRIES", "SESSIONCTX_BACKOFF_AFTER_FAILURES",
    "SESSIONCTX_BACKOFF_BASE", "SESSIONCTX_BACKOFF_MAX", "SESSIONCTX_MODEL_PRICES", "SESSIONCTX_DAILY_TOKEN_BUDGET",
    "SESSIONCTX_MAX_CHUNKS_PER_RUN", "SESSIONCTX_EXTRACTION_RESEND_AFTER", "SESSIONCTX_EXTRACTION_LIVENESS_LOCKS",
    "SESSIONCTX_EXTRACT_WHILE_HUMAN", "SESSIONCTX_EVENT_RETENTION_DAYS", "SESSIONCTX_EVENTS_MAX_WAIT",
    "SESSIONCTX_EVENTS_WAITING_PER_PROCESS",
    "SESSIONCTX_RETENTION_DAYS", "SESSIONCTX_DELETE_BATCH_SIZE", "SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES",
    "SESSIONCTX_WEBHOOK_RETRY_SCHEDULE", "SESSIONCTX_WEBHOOK_TIMEOUT", "SESSIONCTX_WEBHOOK_DISABLE_AFTER",
    "SESSIONCTX_WEBHOOK_ALLOW_PRIVATE",
]

# --- Model-driven extraction -------------------------------------------------------------------------
OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
OPENAI_BASE_URL = env("OPENAI_BASE_URL")
# The Celery task limits follow it (celery.py): a slow local model gets a long OPENAI_TIMEOUT and longer tasks with it.
OPENAI_TIMEOUT = env_float("OPENAI_TIMEOUT", 30.0, positive=True, maximum=86400)
# The client retries nothing itself: SESSIONCTX_MODEL_RETRIES does, where every try is counted in the run record.
if env_int("OPENAI_MAX_RETRIES", 0):
    raise ImproperlyConfigured("OPENAI_MAX_RETRIES is gone: the client's own retries were invisible in the run "
                               "record. Set SESSIONCTX_MODEL_RETRIES instead.")
SESSIONCTX_MODEL = env("SESSIONCTX_MODEL")
# How the answer is held to the snapshot's JSON schema: json_schema (OpenAI, llama.cpp, vLLM), json_object (the schema
# in the prompt), tools (a forced function call), or auto: json_schema, then tools, then json_object, moving on when
# the server answers that it does not support one, and remembering what worked for the life of the process.
SESSIONCTX_STRUCTURED_OUTPUT = env("SESSIONCTX_STRUCTURED_OUTPUT", "auto")
if SESSIONCTX_STRUCTURED_OUTPUT not in {"auto", "json_schema", "json_object", "tools"}:
    raise ImproperlyConfigured("SESSIONCTX_STRUCTURED_OUTPUT must be auto, json_schema, json_object or tools")
SESSIONCTX_INSTRUCTIONS = env("SESSIONCTX_INSTRUCTIONS")
SESSIONCTX_DEFAULT_MODE = env("SESSIONCTX_DEFAULT_MODE", "summary")
if SESSIONCTX_DEFAULT_MODE not in {"summary", "planning"}:
    raise ImproperlyConfigured("SESSIONCTX_DEFAULT_MODE must be 'summary' or 'planning'")
SESSIONCTX_AUTO_UPDATE = env_bool("SESSIONCTX_AUTO_UPDATE", True)
# When a posted turn queues a model-driven update (a session's own update_policy wins): every_turn,
# every_n_turns:N, idle:S (quiet for S seconds: the sweep or a read queues it) or tokens:T (unseen characters / 4 > T).
# The pattern is contexts.extraction.policy's (that module needs the apps loaded).
SESSIONCTX_UPDATE_POLICY = env("SESSIONCTX_UPDATE_POLICY", "every_turn")
if not re.fullmatch(r"every_turn|every_n_turns:[1-9]\d{0,5}|idle:[1-9]\d{0,6}|tokens:[1-9]\d{0,7}",
                    SESSIONCTX_UPDATE_POLICY):
    raise ImproperlyConfigured("SESSIONCTX_UPDATE_POLICY must be every_turn, every_n_turns:N, idle:S or tokens:T")
# GET .../context?fresh=true waits at most this many seconds for an update of the unseen messages.
SESSIONCTX_FRESH_WAIT = env_float("SESSIONCTX_FRESH_WAIT", 10.0)
# GET .../context and .../context/prompt answered from the Redis cache (CACHE_URL) when there is one;
# entries expire after the TTL, which bounds how stale a read can be if a writer dies between its
# commit and its cache delete (contexts/readcache.py).
SESSIONCTX_READ_CACHE = env_bool("SESSIONCTX_READ_CACHE", True)
SESSIONCTX_READ_CACHE_TTL = env_int("SESSIONCTX_READ_CACHE_TTL", 30, minimum=0)
# An active API key stays cached this long: the bound on honouring a deactivation made behind the service's
# back (an SQL UPDATE, a deleted row). Revocations through contexts.services are refused at once.
SESSIONCTX_API_KEY_CACHE_TTL = env_int("SESSIONCTX_API_KEY_CACHE_TTL", 60, minimum=1)
# Bounds on what a snapshot may hold (validated on every write, by anyone).
SESSIONCTX_MAX_SUMMARY_CHARS = env_int("SESSIONCTX_MAX_SUMMARY_CHARS", 4000, minimum=1)
# The size extraction keeps the summary to (both extractors; the model is asked for it). The summary is
# in every extraction prompt and in every agent's <session_context> block, so this is what a prompt costs
# once a conversation is long; the hard bound above is for what agents and staff write themselves.
SESSIONCTX_SUMMARY_CHARS = env_int("SESSIONCTX_SUMMARY_CHARS", 1200)
if not 0 < SESSIONCTX_SUMMARY_CHARS <= SESSIONCTX_MAX_SUMMARY_CHARS:
    raise ImproperlyConfigured("SESSIONCTX_SUMMARY_CHARS must be between 1 and SESSIONCTX_MAX_SUMMARY_CHARS")
SESSIONCTX_MAX_GOAL_CHARS = env_int("SESSIONCTX_MAX_GOAL_CHARS", 1000, minimum=1)
SESSIONCTX_MAX_PLAN_STEPS = env_int("SESSIONCTX_MAX_PLAN_STEPS", 50, minimum=1)
SESSIONCTX_MAX_STEP_CHARS = env_int("SESSIONCTX_MAX_STEP_CHARS", 500, minimum=1)
SESSIONCTX_MAX_MESSAGES_PER_POST = env_int("SESSIONCTX_MAX_MESSAGES_PER_POST", 200, minimum=1)
SESSIONCTX_MAX_MESSAGE_CHARS = env_int("SESSIONCTX_MAX_MESSAGE_CHARS", 100_000, minimum=1)
# Unseen messages above this many characters are consumed in sequential chunks.
SESSIONCTX_PROMPT_BUDGET_CHARS = env_int("SESSIONCTX_PROMPT_BUDGET_CHARS", 24_000, minimum=1)
SESSIONCTX_EXTRACTION_MAX_ATTEMPTS = env_int("SESSIONCTX_EXTRACTION_MAX_ATTEMPTS", 5, minimum=1)
# Transient model errors (429, 5xx, timeouts) are retried this many times inside one attempt, with
# exponential backoff and jitter (a call that timed out twice is not tried again). Worst case per model call:
# (retries + 1) x OPENAI_TIMEOUT + backoff; the extractor starts no call that could end past the soft time limit,
# so that bounds it. The defaults ride out a model endpoint that is down (refusing) for about a
# minute: 10 retries back off at least 0.5+1+2+4+8+10x5 = 65 s in all (jitter 0.5-1.5x).
SESSIONCTX_MODEL_RETRIES = env_int("SESSIONCTX_MODEL_RETRIES", 10, minimum=0)
SESSIONCTX_RETRY_BACKOFF = env_float("SESSIONCTX_RETRY_BACKOFF", 1.0, minimum=0, maximum=3600)
SESSIONCTX_RETRY_BACKOFF_MAX = env_float("SESSIONCTX_RETRY_BACKOFF_MAX", 20.0, minimum=0, maximum=3600)
# The longest answer asked of the model (max_tokens). Unset (0), it is derived from the snapshot bounds above (about
# 500 tokens in summary mode, 2,200 in planning mode with the defaults); lower it for a server with a small context.
SESSIONCTX_MAX_OUTPUT_TOKENS = env_int("SESSIONCTX_MAX_OUTPUT_TOKENS", 0)
# An answer that changes nothing although the messages carry information ends its run as `no_change`, the messages
# left unseen for the next run; after this many such runs on the same messages the next unchanged answer stands.
SESSIONCTX_UNCHANGED_RETRIES = env_int("SESSIONCTX_UNCHANGED_RETRIES", 2)
# Back-off (#18): after this many failed runs in a row (0: never), a session's automatic updates wait
# SESSIONCTX_BACKOFF_BASE seconds after the last failure, doubling with each further failure, at most
# SESSIONCTX_BACKOFF_MAX; the periodic sweep asks for the next update when the wait is over.
SESSIONCTX_BACKOFF_AFTER_FAILURES = env_int("SESSIONCTX_BACKOFF_AFTER_FAILURES", 3)
SESSIONCTX_BACKOFF_BASE = env_float("SESSIONCTX_BACKOFF_BASE", 60.0)
SESSIONCTX_BACKOFF_MAX = env_float("SESSIONCTX_BACKOFF_MAX", 3600.0)
if SESSIONCTX_BACKOFF_AFTER_FAILURES < 0 or not 0 < SESSIONCTX_BACKOFF_BASE <= SESSIONCTX_BACKOFF_MAX:
    raise ImproperlyConfigured("SESSIONCTX_BACKOFF_AFTER_FAILURES must be >= 0 and 0 < SESSIONCTX_BACKOFF_BASE <= "
                               "SESSIONCTX_BACKOFF_MAX")
# Cost (#19): USD per million input and output tokens for each model, as JSON ({"gpt-4o-mini": [0.15, 0.60]}). A run
# records its cost with the prices of the day it finished; a model not listed records no cost (null), not zero.
try:
    _prices = json.loads(env("SESSIONCTX_MODEL_PRICES", "{}"))
    # A pair each: a string of two digits ("12") unpacked as the prices 1 and 2.
    if not all(isinstance(pair, list) and len(pair) == 2 for pair in _prices.values()):
        raise TypeError
    SESSIONCTX_MODEL_PRICES = {str(name): (Decimal(str(p_in)), Decimal(str(p_out))) for name, (p_in, p_out) in
                               _prices.items()}
except (ValueError, TypeError, AttributeError, ArithmeticError):
    raise ImproperlyConfigured('SESSIONCTX_MODEL_PRICES must be JSON like {"gpt-4o-mini": [0.15, 0.60]}') from None
if any(not isinstance(price, int | float) or isinstance(price, bool) for pair in _prices.values() for price in pair) \
        or any(not price.is_finite() or price < 0 for prices in SESSIONCTX_MODEL_PRICES.values() for price in prices):
    raise ImproperlyConfigured("SESSIONCTX_MODEL_PRICES: every price must be a number of USD, 0 or more")
# Tokens (input + output) each project's runs may use per day (UTC), counted per project (a project's own
# daily_token_budget wins), 0 = no limit; once reached, a run ends budget_exceeded without calling the model and its
# messages stay unseen for a run after midnight.
SESSIONCTX_DAILY_TOKEN_BUDGET = env_int("SESSIONCTX_DAILY_TOKEN_BUDGET", 0)
# A run consumes at most this many prompt-sized chunks; the rest goes to a follow-up run.
SESSIONCTX_MAX_CHUNKS_PER_RUN = env_int("SESSIONCTX_MAX_CHUNKS_PER_RUN", 4, minimum=1)
# A queued run not picked up this long after it was sent is sent again (by the next request for
# the session, the periodic sweep, a worker starting, or `manage.py update_context --pending`).
SESSIONCTX_EXTRACTION_RESEND_AFTER = env_int("SESSIONCTX_EXTRACTION_RESEND_AFTER", 120)
# PostgreSQL: a running attempt holds an advisory lock on its connection, so one whose worker died is taken
# over at once instead of after its lease (the hard time limit + 10%). Turn off behind a connection pooler in
# transaction mode (PgBouncer), where a session-level lock does not stay with one client.
SESSIONCTX_EXTRACTION_LIVENESS_LOCKS = env_bool("SESSIONCTX_EXTRACTION_LIVENESS_LOCKS", True)
# The handoff desk: while a person owns a conversation, posted turns queue no model-driven update unless this
# is on (what was said meanwhile is read when the person hands it back).
SESSIONCTX_EXTRACT_WHILE_HUMAN = env_bool("SESSIONCTX_EXTRACT_WHILE_HUMAN", False)
# The event feed (GET /api/v1/events): how long events are kept, and the longest long-poll.
SESSIONCTX_EVENT_RETENTION_DAYS = env_int("SESSIONCTX_EVENT_RETENTION_DAYS", 7)
SESSIONCTX_EVENTS_MAX_WAIT = env_int("SESSIONCTX_EVENTS_MAX_WAIT", 30, minimum=0)
# Long-polls a web process holds at once (each holds a thread); more answer at once, and their clients poll again a
# moment later. Keep it below the threads of a web process (4 in the Procfile and deploy/), or long-polls take every
# thread and the API and the health checks wait behind them.
SESSIONCTX_EVENTS_WAITING_PER_PROCESS = env_int("SESSIONCTX_EVENTS_WAITING_PER_PROCESS", 2, minimum=0)
# There is no "off": 0 would have the hourly purge delete every event (and the webhook deliveries pending for them).
if not 1 <= SESSIONCTX_EVENT_RETENTION_DAYS <= 36500:
    raise ImproperlyConfigured("SESSIONCTX_EVENT_RETENTION_DAYS must be from 1 to 36500 (days), "
                               f"got {SESSIONCTX_EVENT_RETENTION_DAYS}")
# Retention: sessions untouched (no change, no message) for this many days are deleted by the periodic purge;
# 0 keeps them forever. Deletions go this many sessions per transaction, so no lock is held for long.
SESSIONCTX_RETENTION_DAYS = env_int("SESSIONCTX_RETENTION_DAYS", 0)
SESSIONCTX_DELETE_BATCH_SIZE = env_int("SESSIONCTX_DELETE_BATCH_SIZE", 200)
if SESSIONCTX_RETENTION_DAYS < 0 or SESSIONCTX_DELETE_BATCH_SIZE < 1:
    raise ImproperlyConfigured("SESSIONCTX_RETENTION_DAYS must be >= 0 and SESSIONCTX_DELETE_BATCH_SIZE >= 1")
# The staff queue highlights a conversation that has waited for a person longer than this many minutes.
SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES = env_int("SESSIONCTX_HANDOFF_WAIT_WARN_MINUTES", 5)
# Webhooks: seconds between attempts (an attempt more than there are steps), the timeout of one attempt, and how
# many deliveries in a row may fail before the endpoint is disabled. Private addresses only for local tests.
try:
    SESSIONCTX_WEBHOOK_RETRY_SCHEDULE = [float(s) for s in env_list("SESSIONCTX_WEBHOOK_RETRY_SCHEDULE",
                                                                    "5,300,1800,7200,18000,36000,36000")]
except ValueError:
    raise ImproperlyConfigured("SESSIONCTX_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds") from None
if not all(math.isfinite(step) and step >= 0 for step in SESSIONCTX_WEBHOOK_RETRY_SCHEDULE):
    raise ImproperlyConfigured("SESSIONCTX_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, each 0 or more")
SESSIONCTX_WEBHOOK_TIMEOUT = env_float("SESSIONCTX_WEBHOOK_TIMEOUT", 10.0, positive=True)
SESSIONCTX_WEBHOOK_DISABLE_AFTER = env_int("SESSIONCTX_WEBHOOK_DISABLE_AFTER", 10)
SESSIONCTX_WEBHOOK_ALLOW_PRIVATE = env_bool("SESSIONCTX_WEBHOOK_ALLOW_PRIVATE", False)
