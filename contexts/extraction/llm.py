"""The `openai` client, built from settings, and the one call the extractors make with it.

Only the extractors call this module. The client is rebuilt when the settings it was
built from change (tests point OPENAI_BASE_URL at a fake server), otherwise reused.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings

_lock = threading.Lock()
_clients: dict[tuple, openai.OpenAI] = {}


def is_configured() -> bool:
    """A model is configured: extraction goes to it instead of the offline extractor."""
    return bool(settings.SESSIONCTX_MODEL)


def model_name() -> str:
    return settings.SESSIONCTX_MODEL


def client() -> openai.OpenAI:
    """The shared client for the current settings: explicit timeout, and no retries of its own.

    The client's retries are invisible (one call, several HTTP requests); the extractor retries in one place
    instead, where each attempt is counted in the run record and bounded by the task's time limit.
    """
    key = (settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL or None, float(settings.OPENAI_TIMEOUT))
    with _lock:
        found = _clients.get(key)
        if found is None:
            api_key, base_url, timeout = key
            # Local servers (vLLM, Ollama, llama.cpp) take any key; the client insists on one.
            found = openai.OpenAI(api_key=api_key or "not-needed", base_url=base_url, timeout=timeout,
                                  max_retries=0)
            _clients.clear()
            _clients[key] = found
        return found


def worst_call_seconds() -> float:
    """How long one `chat_json` call (one HTTP request) can take at most."""
    return float(settings.OPENAI_TIMEOUT)


@dataclass(frozen=True)
class Completion:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


def chat_json(*, messages: list[dict[str, str]], schema_name: str, schema: dict[str, Any], max_tokens: int,
              model: str | None = None) -> Completion:
    """One chat completion (one HTTP request) constrained to a strict JSON schema, at most `max_tokens` long.
    Raises the client's errors as they are."""
    started = time.monotonic()
    response = client().chat.completions.create(
        model=model or model_name(),
        messages=messages,
        response_format={"type": "json_schema",
                         "json_schema": {"name": schema_name, "strict": True, "schema": schema}},
        temperature=0,
        # Without it a small local model that never closes its JSON writes until its context is full.
        max_tokens=max_tokens,
    )
    latency_ms = int((time.monotonic() - started) * 1000)
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else None
    usage = response.usage
    return Completion(
        content=getattr(message, "content", None),
        refusal=getattr(message, "refusal", None),
        finish_reason=getattr(choice, "finish_reason", None),
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        latency_ms=latency_ms,
    )
