"""The extractor interface, the result it returns, and how unseen messages are cut into chunks."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

TRUNCATION_MARKER = "\n[… {omitted} characters omitted to fit the prompt budget …]\n"


class ExtractionError(Exception):
    """The extractor could not produce a valid snapshot; `reason` says why, in words for the run record.

    `transient` errors (rate limits, 5xx, timeouts) were retried and still failed; the
    messages stay unseen, so a later run tries them again.
    """

    def __init__(self, reason: str, *, transient: bool = False, usage: Usage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.usage = usage or Usage()


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_chars: int = 0
    model_calls: int = 0
    latency_ms: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.prompt_chars += other.prompt_chars
        self.model_calls += other.model_calls
        self.latency_ms += other.latency_ms


@dataclass
class ExtractionResult:
    snapshot: dict[str, Any]
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class PromptMessage:
    """A message as an extractor sees it; `content` may carry a truncation marker."""

    seq: int
    role: str
    content: str


class Deadline:
    """Stops starting model calls that could run past the task's soft time limit."""

    def __init__(self, seconds: float | None = None) -> None:
        limit = seconds if seconds is not None else float(settings.CELERY_TASK_SOFT_TIME_LIMIT)
        self.ends = time.monotonic() + limit

    def allows(self, seconds: float) -> bool:
        return time.monotonic() + seconds < self.ends


class Extractor(ABC):
    """Given the previous snapshot, the mode and unseen messages, return the next snapshot."""

    name: str = ""
    model: str = ""

    @abstractmethod
    def extract(self, *, previous: dict[str, Any], mode: str, messages: list[PromptMessage],
                deadline: Deadline | None = None) -> ExtractionResult:
        """The next snapshot content: `summary`, plus `goal`, `plan`, `progress` in planning mode."""

    def prompt_overhead(self, *, previous: dict[str, Any], mode: str) -> int:
        """Characters of a prompt before any message is added."""
        return 0

    def message_chars(self, message: PromptMessage) -> int:
        """Characters a message takes in the prompt."""
        return len(message.content)


def chunk_messages(messages: list[PromptMessage], *, budget: int, extractor: Extractor,
                   previous: dict[str, Any], mode: str) -> Iterator[list[PromptMessage]]:
    """Cut messages into sequential chunks whose prompts stay within `budget` characters, one chunk at a time (a
    run that takes the first chunk of a long backlog sizes only that one).

    No message is skipped or repeated; one message too big for a prompt on its own is
    truncated (head and tail kept, a marker in the middle) rather than exceeding the budget.
    """
    room = max(budget - extractor.prompt_overhead(previous=previous, mode=mode), 500)
    current: list[PromptMessage] = []
    used = 0
    for message in messages:
        size = extractor.message_chars(message)
        if size > room:
            message = truncate(message, size - room)
            size = extractor.message_chars(message)
        if current and used + size > room:
            yield current
            current, used = [], 0
        current.append(message)
        used += size
    if current:
        yield current


def truncate(message: PromptMessage, excess: int) -> PromptMessage:
    """The message shortened by at least `excess` characters, keeping its start and end."""
    content = message.content
    marker_room = len(TRUNCATION_MARKER) + 12
    keep = max(len(content) - excess - marker_room, 0)
    head, tail = content[: keep * 2 // 3], content[len(content) - keep // 3:] if keep // 3 else ""
    omitted = len(content) - len(head) - len(tail)
    return PromptMessage(message.seq, message.role, head + TRUNCATION_MARKER.format(omitted=omitted) + tail)
