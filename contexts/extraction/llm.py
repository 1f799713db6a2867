"""The `openai` client, built from settings, and the one call the extractors make with it.

Only the extractors call this module. The client is rebuilt when the settings it was
built from change (tests point OPENAI_BASE_URL at a fake server), otherwise reused.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings

from ..infra.instruments import model_call_latency

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


def _text_of(content: Any) -> str | None:
    """An answer's text: a string, or the text parts of a list of content parts (as some servers and gateways
    answer); anything else as text, which the answer's checks then refuse with the reason."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content
                       if isinstance(part, dict) and part.get("type") in ("text", "output_text"))
    return str(content)


@dataclass(frozen=True)
class Completion:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


# How an answer is held to the schema. Servers differ: OpenAI, llama.cpp and vLLM take json_schema; some only
# json_object (the schema then goes in the prompt) or tool calls. "auto" tries them in this order.
STRUCTURED_WAYS = ("json_schema", "tools", "json_object")
# auto: the way each (endpoint, model) accepted, remembered for the life of the process.
_chosen: dict[tuple, str] = {}
_UNSUPPORTED = re.compile(r"response_format|json_schema|json_object|tool|not supported|unsupported|grammar",
                          re.IGNORECASE)


def structured_ways(model: str) -> list[str]:
    """The ways to try, in order: the configured one, or under auto the one remembered, else all of them."""
    configured = settings.SESSIONCTX_STRUCTURED_OUTPUT
    if configured != "auto":
        return [configured]
    chosen = _chosen.get((settings.OPENAI_BASE_URL, model))
    return [chosen] if chosen else list(STRUCTURED_WAYS)


def remember(model: str, way: str) -> None:
    if settings.SESSIONCTX_STRUCTURED_OUTPUT == "auto":
        _chosen[(settings.OPENAI_BASE_URL, model)] = way


def refuses_the_way(exc: openai.APIStatusError) -> bool:
    """A 400 saying the server does not support that way of structuring the answer (not a bad prompt)."""
    return exc.status_code in (400, 404, 422, 501) and bool(_UNSUPPORTED.search(str(exc.message)))


def chat_json(*, messages: list[dict[str, str]], schema_name: str, schema: dict[str, Any], max_tokens: int,
              model: str | None = None, way: str = "json_schema") -> Completion:
    """One chat completion (one HTTP request) held to a strict JSON schema `way` (STRUCTURED_WAYS), at most
    `max_tokens` long. Raises the client's errors as they are."""
    shape: dict[str, Any]
    if way == "tools":
        shape = {"tools": [{"type": "function", "function": {"name": schema_name, "parameters": schema,
                                                              "strict": True}}],
                 "tool_choice": {"type": "function", "function": {"name": schema_name}}}
    elif way == "json_object":
        # Only "some JSON object" is enforced: the schema goes into the instructions.
        shape = {"response_format": {"type": "json_object"}}
        first, *rest = messages
        messages = [{**first, "content": first["content"] + "\nThe JSON object must match this JSON schema:\n"
                     + json.dumps(schema) + "\n"}, *rest]
    else:
        shape = {"response_format": {"type": "json_schema",
                                     "json_schema": {"name": schema_name, "strict": True, "schema": schema}}}
    model, api = model or model_name(), client()  # a new client takes a while to build: not the model's time
    started, outcome = time.monotonic(), "error"
    try:
        response = api.chat.completions.create(
            model=model,
            messages=messages,
            temperature=0,
            # Without it a small local model that never closes its JSON writes until its context is full.
            max_tokens=max_tokens,
            **shape,
        )
        outcome = "ok"
    finally:
        model_call_latency.labels(model, outcome).observe(time.monotonic() - started)  # /metrics
    latency_ms = int((time.monotonic() - started) * 1000)
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else None
    usage = response.usage
    content = _text_of(getattr(message, "content", None))
    calls = getattr(message, "tool_calls", None) or []
    if way == "tools" and calls:
        content = calls[0].function.arguments
    return Completion(
        content=content,
        refusal=getattr(message, "refusal", None),
        finish_reason=getattr(choice, "finish_reason", None),
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        latency_ms=latency_ms,
    )
