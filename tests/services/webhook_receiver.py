"""A webhook receiver on 127.0.0.1 for tests: answers each request as told, keeps what it received."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.concurrency import in_another_connection


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """`answers` is consumed one per request: a status code, ("sleep", seconds, status), ("retry-after", seconds,
    status), ("dribble", seconds, status) (the status line, then a byte of a header every 0.1 s for that long) or
    ("stream", seconds, status) (whole headers, then a body of 1 GiB as fast as it is read, for that long) or
    ("meanwhile", work, status) (`work` done, as another process would, before the answer); then `default`."""

    def __init__(self, *answers, default: int = 200) -> None:
        self.answers = list(answers)
        self.default = default
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.received.append(Received(dict(self.headers.items()), body, self.path))
                    answer = receiver.answers.pop(0) if receiver.answers else receiver.default
                headers = {}
                if isinstance(answer, tuple):
                    kind, seconds, answer = answer
                    if kind == "dribble":
                        self._dribble(seconds, answer)
                        return
                    if kind == "stream":
                        self._stream(seconds, answer)
                        return
                    if kind == "sleep":
                        time.sleep(seconds)
                    elif kind == "meanwhile":
                        in_another_connection(seconds)
                    else:
                        headers["retry-after"] = str(seconds)
                try:
                    self.send_response(answer)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def _dribble(self, seconds: float, status: int) -> None:
                # Each byte comes well within any read timeout; the answer never ends while it lasts.
                try:
                    self.wfile.write(f"HTTP/1.1 {status} OK\r\nx-slow: ".encode())
                    self.wfile.flush()
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        time.sleep(0.1)
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    pass  # the sender gave up waiting

            def _stream(self, seconds: float, status: int) -> None:
                try:
                    self.wfile.write(f"HTTP/1.1 {status} OK\r\ncontent-length: {2 ** 30}\r\n\r\n".encode())
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        self.wfile.write(b"x" * 65536)
                except OSError:
                    pass  # the sender stopped reading

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sessionctx?src=test"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests within {timeout} s, got {len(self.received)}")
