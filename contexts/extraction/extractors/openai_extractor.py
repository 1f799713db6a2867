"""The model extractor: any OpenAI-compatible chat API, answering through a strict JSON schema."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

import openai
from django.conf import settings

from ...snapshot import fields_for, problems
from .. import llm
from . import instructions
from .base import Deadline, ExtractionError, ExtractionResult, Extractor, PromptMessage, Usage

logger = logging.getLogger(__name__)

# Status codes worth another try: the request was fine, the server was not (or was busy).
TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# A call that timed out this many times is given up (the rest of SESSIONCTX_MODEL_RETRIES is for refusals).
TIMEOUTS_PER_CALL = 2
# How OpenAI, vLLM, llama.cpp's llama-server, Ollama and LM Studio word "the prompt does not fit the context".
CONTEXT_OVERFLOW = re.compile(r"context[ _-]?(length|size|window)|exceed_context|maximum context|too many tokens",
                              re.IGNORECASE)


def is_context_overflow(exc: openai.APIStatusError) -> bool:
    body = exc.body if isinstance(exc.body, dict) else {}
    words = " ".join(str(part) for part in (exc.message, getattr(exc, "code", None), getattr(exc, "type", None),
                                             body.get("type"), body.get("code")) if part)
    return bool(CONTEXT_OVERFLOW.search(words))


def _quote(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return float(raw_ms) / 1000
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        try:
            return max(parsedate_to_datetime(raw).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a server's Retry-After wins when it asks for longer."""
    base = float(settings.SESSIONCTX_RETRY_BACKOFF)
    ceiling = float(settings.SESSIONCTX_RETRY_BACKOFF_MAX)
    delay = min(ceiling, base * (2 ** attempt)) * random.uniform(0.5, 1.5)
    if retry_after is not None:
        delay = max(delay, min(retry_after, ceiling))
    return min(delay, ceiling)


def _tidy(value: Any) -> Any:
    """Spaces around a text and empty steps in a list are padding, dropped rather than held against the model."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(step, str) for step in value):
        return [step.strip() for step in value if step.strip()]
    return value


def check_answer(content: str | None, *, mode: str, summary_limit: int, refusal: str | None = None,
                 finish_reason: str | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """The snapshot in a model answer, or the problems that make it unusable."""
    if refusal:
        return None, [f"the model refused: {_quote(refusal)}"]
    if finish_reason == "length":
        return None, ["the answer was cut off at the output token limit"]
    if not content or not content.strip():
        return None, ["the answer was empty"]
    try:
        data = json.loads(content)
    except ValueError:
        return None, [f"the model answered in prose instead of returning the context JSON: {_quote(content)}"]
    if not isinstance(data, dict):
        return None, [f"the answer is JSON but not an object: {_quote(content)}"]
    fields = fields_for(mode)
    missing = [name for name in fields if name not in data]
    if missing:
        return None, [f"the answer lacks the required keys {', '.join(missing)}: {_quote(content)}"]
    snapshot = {name: _tidy(data[name]) for name in fields}
    found = problems(snapshot, summary_limit=summary_limit)
    return (None, [f"{name}: {text}" for name, text in found.items()]) if found else (snapshot, [])


# Words in the new messages that make a drastic change expected rather than suspicious.
_STARTING_OVER = re.compile(r"\b(start(ing)? over|from scratch|forget|reset|scrap|drop (the|that|this)|new plan|"
                            r"cancel|never ?mind|instead|change (of )?plans?|different (goal|plan))\b", re.IGNORECASE)
# A summary shorter than this fraction of a substantial previous one dropped what it held.
SUMMARY_KEEP = 0.3


def _norm(step: str) -> str:
    return " ".join(re.findall(r"\w+", step.lower()))


# The opening of a reply to the user, not of a third-person summary or goal: a model that continues the dialogue
# inside the JSON (agno's issue #8849 without a schema to stop it) would put its reply into agents' prompts.
_TALKS_TO_USER = re.compile(r"^\W*(?:sure|certainly|of course|absolutely|great question|happy to help|glad to help|"
                            r"i'?d (?:be happy|love) to|i would be happy|i can help|i'?m sorry|as an ai|hello|hi there|"
                            r"here(?:'s| is) (?:how|what|a |an |the |my |your )|let me (?:help|explain|know))\b",
                            re.IGNORECASE)


def talks_to_user(previous: dict[str, Any], snapshot: dict[str, Any]) -> list[str]:
    """Fields the answer filled with a reply to the user instead of what the conversation holds."""
    return [f"{name}: the answer talks to the user instead of extracting ({_quote(snapshot[name], 80)}); write a "
            "third-person account of the conversation, never a reply"
            for name in ("summary", "goal") if name in snapshot and snapshot[name] != previous.get(name)
            and _TALKS_TO_USER.match(snapshot[name])]


def implausible(previous: dict[str, Any], snapshot: dict[str, Any], messages: list[PromptMessage]) -> list[str]:
    """Schema-valid answers that no conversation explains (drastic changes: unless the new messages ask for a fresh
    start)."""
    found = talks_to_user(previous, snapshot)
    if any(_STARTING_OVER.search(m.content) for m in messages):
        return found
    if "plan" in snapshot:
        plan = {_norm(step) for step in snapshot["plan"]}
        done_before = {_norm(step) for step in previous.get("progress") or []}
        stray = [step for step in snapshot["progress"] if _norm(step) not in plan | done_before]
        if stray:
            found.append(f"progress holds steps that are not in the plan: {_quote('; '.join(stray))} (progress "
                         "lists plan steps that are done, worded like the plan)")
        if previous.get("plan") and not snapshot["plan"]:
            found.append("the plan was emptied although no message drops it")
        if (previous.get("goal") or "").strip() and not snapshot["goal"]:
            found.append("the goal was emptied although no message drops it")
    before = len(previous.get("summary") or "")
    if before >= 200 and len(snapshot["summary"]) < SUMMARY_KEEP * before:
        found.append(f"the summary shrank from {before} to {len(snapshot['summary'])} characters: keep the facts of "
                     "the previous summary")
    return found


class OpenAIExtractor(Extractor):
    name = "openai"

    def __init__(self, *, model: str) -> None:
        self.model = model

    def prompt_overhead(self, *, previous: dict[str, Any], mode: str) -> int:
        return len(instructions.instructions(mode)) + len(instructions.user_prompt(previous, mode, []))

    def message_chars(self, message: PromptMessage) -> int:
        return len(instructions.render_message(message))

    def extract(self, *, previous: dict[str, Any], mode: str, messages: list[PromptMessage],
                deadline: Deadline | None = None) -> ExtractionResult:
        usage = Usage()
        prompt = [
            {"role": "system", "content": instructions.instructions(mode)},
            {"role": "user", "content": instructions.user_prompt(previous, mode, messages)},
        ]
        max_tokens = instructions.max_output_tokens(mode, previous)
        completion = self._call(prompt, mode, usage, deadline, max_tokens)
        snapshot, problems = check_answer(completion.content, mode=mode, refusal=completion.refusal,
                                          finish_reason=completion.finish_reason,
                                          summary_limit=settings.SESSIONCTX_SUMMARY_CHARS)
        if snapshot is not None:
            problems = implausible(previous, snapshot, messages)
            snapshot = None if problems else snapshot
        if snapshot is not None:
            return ExtractionResult(snapshot=snapshot, usage=usage)
        # One repair try: the same prompt, with what was wrong and the schema (not the unusable answer, which
        # can be as long as the output limit: repeated back, it overflowed a small model's context).
        # The problems quote the answer, which quotes the conversation: they go on the run (erased with the
        # session), not into logs that no erasure reaches.
        logger.info("model answer unusable (%d problem(s), kept on the run); asking once for a repair", len(problems))
        first = problems
        repair = [*prompt, {"role": "user", "content": instructions.repair_prompt(problems, mode)}]
        completion = self._call(repair, mode, usage, deadline, max_tokens)
        # A repaired summary still a little over the asked-for size is kept if any writer could store it:
        # failing the run would send the same messages again next time and leave the snapshot behind.
        snapshot, problems = check_answer(completion.content, mode=mode, refusal=completion.refusal,
                                          finish_reason=completion.finish_reason,
                                          summary_limit=settings.SESSIONCTX_MAX_SUMMARY_CHARS)
        if snapshot is not None:
            problems = implausible(previous, snapshot, messages)
            snapshot = None if problems else snapshot
        if snapshot is None:
            raise ExtractionError(
                "Invalid model output after one repair try: " + "; ".join(problems)
                + (" (first answer: " + "; ".join(first) + ")" if first != problems else ""),
                usage=usage,
            )
        return ExtractionResult(snapshot=snapshot, usage=usage)

    def _call(self, prompt: list[dict[str, str]], mode: str, usage: Usage, deadline: Deadline | None,
              max_tokens: int) -> llm.Completion:
        """One completion, retrying transient failures with exponential backoff and jitter; every HTTP request
        is one of these tries (the client retries nothing itself) and counted in `usage.model_calls`."""
        retries = int(settings.SESSIONCTX_MODEL_RETRIES)
        last = ""
        timeouts = 0
        ways = llm.structured_ways(self.model)
        way = ways.pop(0)
        attempt = 0  # tries of a transient error; a way the server refuses is not one
        while True:
            if deadline is not None and not deadline.allows(llm.worst_call_seconds()):
                raise ExtractionError(f"Out of time for another model call ({last or 'no answer yet'})",
                                      transient=True, usage=usage)
            usage.model_calls += 1
            usage.prompt_chars += sum(len(m["content"]) for m in prompt)
            started = time.monotonic()
            retry_after = None
            try:
                completion = llm.chat_json(messages=prompt, schema_name=f"session_context_{mode}",
                                           schema=instructions.schema(mode), model=self.model, max_tokens=max_tokens,
                                           way=way)
            except openai.APITimeoutError:
                timeouts += 1
                last = f"the model did not answer within {settings.OPENAI_TIMEOUT:g} s"
                if timeouts >= TIMEOUTS_PER_CALL:
                    # The same temperature-0 request again is most likely as slow again: a slow model, not a
                    # busy one. The messages stay unseen for a later run.
                    raise ExtractionError(
                        f"The model did not answer within {settings.OPENAI_TIMEOUT:g} s, {timeouts} times: a slow "
                        "(local) model needs a longer OPENAI_TIMEOUT", transient=True, usage=usage) from None
            except openai.APIConnectionError as exc:
                last = f"cannot reach the model API: {exc}"
            except openai.APIStatusError as exc:
                code = getattr(exc, "code", None)
                if exc.status_code == 400 and is_context_overflow(exc):
                    # A bigger or repeated prompt cannot help: say what to change.
                    raise ExtractionError(
                        f"The prompt and answer do not fit the model's context ({_quote(exc.message, 300)}); "
                        f"this call asked for {max_tokens} output tokens. Give the server a bigger context, or "
                        "lower SESSIONCTX_PROMPT_BUDGET_CHARS or SESSIONCTX_MAX_OUTPUT_TOKENS.", usage=usage,
                    ) from exc
                if ways and llm.refuses_the_way(exc):
                    # SESSIONCTX_STRUCTURED_OUTPUT=auto: this server does not take that way; the next one, now.
                    logger.warning("the model API refused %s (%s); trying %s", way, _quote(exc.message), ways[0])
                    last, way = f"the model API refused {way}", ways.pop(0)
                    continue
                if exc.status_code not in TRANSIENT_STATUS or code == "insufficient_quota":
                    raise ExtractionError(
                        f"The model API refused the request ({exc.status_code}): {_quote(exc.message, 300)}",
                        usage=usage,
                    ) from exc
                last = f"the model API answered {exc.status_code}"
                retry_after = _retry_after(exc)
            else:
                llm.remember(self.model, way)
                usage.prompt_tokens += completion.prompt_tokens
                usage.completion_tokens += completion.completion_tokens
                usage.latency_ms += completion.latency_ms
                return completion
            elapsed_ms = int((time.monotonic() - started) * 1000)
            usage.latency_ms += elapsed_ms
            if attempt >= retries:
                break
            delay = backoff_seconds(attempt, retry_after)
            logger.warning("model call failed (%s); try %d of %d again in %.2f s", last, attempt + 1,
                           retries + 1, delay)
            time.sleep(delay)
            attempt += 1
        raise ExtractionError(f"Model unavailable after {retries + 1} tries: {last}", transient=True, usage=usage)
