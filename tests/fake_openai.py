"""An OpenAI-compatible chat completions server on 127.0.0.1 with scripted answers.

Tests and benchmarks point the real `openai` client at it (OPENAI_BASE_URL). Each request is
recorded; each answer comes from the script (in order), else from the default responder, which
extracts like a well-behaved model: it keeps the previous context and appends "m<seq>" for every
message it was shown, so tests can see exactly which messages each prompt carried.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_MESSAGE = re.compile(r'<message seq="(\d+)" role="(\w+)">\n(.*?)\n</message>', re.DOTALL)


@dataclass
class Reply:
    status: int = 200
    content: str | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int = 17
    finish_reason: str = "stop"


def looping(request: dict[str, Any]) -> Reply:
    """A small model that never closes its JSON: it writes until max_tokens (about 4 characters a token) cuts it
    off, as llama.cpp's llama-server answers; without max_tokens it would write until its context is full."""
    limit = request.get("max_tokens") or request.get("max_completion_tokens") or 100_000
    text = '{"summary": "' + "the user the user " * (limit * 4 // 18 + 1)
    return Reply(content=text[: limit * 4], completion_tokens=limit, finish_reason="length")


def answer(data: dict[str, Any], **kwargs) -> Reply:
    """A JSON answer, as a model following the schema gives it."""
    return Reply(content=json.dumps(data), **kwargs)


def prose(text: str, **kwargs) -> Reply:
    """A model that chats instead of extracting."""
    return Reply(content=text, **kwargs)


def error(status: int, message: str = "error", *, retry_after: str | None = None, **kwargs) -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(status=status, body={"error": {"message": message, "type": "server_error", "code": None}},
                 headers=headers, **kwargs)


def parse_prompt(request: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[int, str, str]]]:
    """(previous context, [(seq, role, content)]) from a recorded extraction request."""
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    previous_json = user.split("Previous context:\n", 1)[1].split("\nNew messages:", 1)[0]
    return json.loads(previous_json), [(int(s), r, c) for s, r, c in _MESSAGE.findall(user)]


def echo_extraction(request: dict[str, Any]) -> Reply:
    """Keep the previous context; append m<seq> for each message shown (the summary is a ledger)."""
    previous, messages = parse_prompt(request)
    data = dict(previous)
    data["summary"] = (previous.get("summary", "") + "".join(f" m{seq}" for seq, _, _ in messages)).strip()
    return answer(data)


class FakeOpenAI:
    def __init__(self, default: Callable[[dict[str, Any]], Reply] | None = echo_extraction, *,
                 context_tokens: int | None = None, formats: frozenset[str] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        # Like llama-server with -c N: a prompt (4 characters a token) plus max_tokens past it is refused with 400.
        self.context_tokens = context_tokens
        self.in_flight = self.max_in_flight = 0
        # The ways of structuring an answer this server takes (json_schema, json_object, tools); others are refused
        # with a 400, as servers that lack one answer. None: all of them.
        self.formats = formats
        self.script: deque[Reply] = deque()
        self.default = default
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the body waits for the
            # client's delayed ACK (~40 ms a response). Real servers (uvicorn, vLLM) set TCP_NODELAY too.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                # A reply's delay is the model's latency: counted from the request's arrival, so the fake's own
                # work (parsing, scripting, encoding the answer) is inside it, not added to it.
                arrived = time.monotonic()
                length = int(self.headers.get("content-length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(request)
                    reply = fake.script.popleft() if fake.script else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer(request, reply, arrived)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, request, reply, arrived):
                prompt_chars = sum(len(m.get("content") or "") for m in request.get("messages", []))
                if fake.context_tokens and prompt_chars // 4 + (request.get("max_tokens") or 0) > fake.context_tokens:
                    # llama-server's words and type for it.
                    reply = Reply(status=400, body={"error": {
                        "code": 400, "type": "exceed_context_size_error",
                        "message": f"the request exceeds the available context size ({prompt_chars // 4} prompt "
                                   f"tokens + {request.get('max_tokens') or 0} > {fake.context_tokens}), try "
                                   "increasing it"}})
                way = "tools" if request.get("tools") else (request.get("response_format") or {}).get("type")
                if fake.formats is not None and way not in fake.formats:
                    reply = error(400, f"'{way}' is not supported by this server (response_format / tools)")
                if reply is None:
                    reply = fake.default(request) if fake.default else error(500, "no scripted answer")
                message = {"role": "assistant", "content": reply.content, "refusal": None}
                # The extractor's tools mode forces its one tool; an agent's tools (auto) get the scripted answer as is.
                if way == "tools" and isinstance(request.get("tool_choice"), dict) and reply.status == 200:
                    name = request["tools"][0]["function"]["name"]
                    message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": name, "arguments": reply.content}}]}
                if reply.status == 200:
                    body = reply.body or {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": request.get("model", "fake"),
                        "choices": [{"index": 0, "finish_reason": reply.finish_reason, "logprobs": None,
                                     "message": message}],
                        "usage": {"prompt_tokens": reply.prompt_tokens or prompt_chars // 4,
                                  "completion_tokens": reply.completion_tokens,
                                  "total_tokens": (reply.prompt_tokens or prompt_chars // 4) + reply.completion_tokens},
                    }
                else:
                    body = reply.body or {}
                raw = json.dumps(body).encode()
                if reply.delay:
                    time.sleep(max(0.0, reply.delay - (time.monotonic() - arrived)))
                if request.get("stream") and reply.status == 200 and reply.body is None:
                    self._stream(body, reply.content or "")
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _stream(self, body, content):
                # stream=true: the answer as server-sent events, a chunk per word, as OpenAI's API sends it.
                words = re.findall(r"\S+\s*", content) or [""]
                chunk = {key: body[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
                deltas = [{"role": "assistant", "content": words[0]}, *({"content": w} for w in words[1:])]
                events = [chunk | {"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
                events.append(chunk | {"choices": [{"index": 0, "delta": {},
                                                    "finish_reason": body["choices"][0]["finish_reason"]}]})
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")  # no length: the stream ends with the connection
                    self.end_headers()
                    self.close_connection = True
                    for event in events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            # socketserver's default listen backlog is 5: 32 clients connecting at once overflowed it, and the
            # dropped SYNs came back after the kernel's 1 s retransmit (a 1.5 s model call in the throughput
            # bench). Real servers listen with a long backlog (uvicorn: 2048).
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def prompts(self) -> list[str]:
        """The user prompt of every recorded request."""
        return [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in self.requests]

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
