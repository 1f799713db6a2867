"""A TCP forwarding proxy in a process of its own, so a test can freeze a dependency with SIGSTOP.

A stopped proxy is what a hung server looks like from the client: connections are accepted and data is
acknowledged by the kernel, but nothing ever answers. `python -m tests.reliability.tcp_proxy HOST PORT`
listens on a free local port, prints it, and forwards every connection to HOST:PORT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve(host: str, port: int) -> None:
    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    server = await asyncio.start_server(forward, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class TcpProxy:
    """The proxy as a child process: `freeze()` stops it (SIGSTOP), `thaw()` lets it go on (SIGCONT)."""

    def __init__(self, host: str, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.tcp_proxy", host, str(port)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.port = int(self.process.stdout.readline())

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.thaw()
            self.process.kill()
            self.process.wait(5)
        self.process.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2])))
