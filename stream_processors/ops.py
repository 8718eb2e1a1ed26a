"""The operations endpoints of a processor worker, on ``PG_METRICS_HOST:PG_METRICS_PORT``:

* ``GET /metrics``: Prometheus text (records, batches, lag, dead letters, pauses, sessions).
* ``GET /health``: liveness, 200 until the consumer loop has ended (a paused, retrying loop is alive).
* ``GET /ready``: readiness, 200 when the consumer joined its group, no flush is being retried and every
  sink answers a ping; 503 otherwise.  The body lists each check as JSON.

A small HTTP/1.1 server on asyncio streams, in the worker's own event loop (so /ready can await the
sinks' pings), one request per connection.  uvicorn is not used here because its ``serve`` installs its
own SIGTERM/SIGINT handlers, which would take graceful shutdown away from the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_processors.runner import BatchRunner

__all__ = ["OpsServer"]

log = logging.getLogger("productgraph.processor.ops")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class OpsServer:
    def __init__(self, runner: BatchRunner, host: str, port: int) -> None:
        self._runner = runner
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("ops endpoints on http://%s:%d (/metrics /health /ready)", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            status, ctype, body = await self._route(request.split(b"\r\n", 1)[0].decode("latin-1"))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, UnicodeDecodeError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _route(self, request_line: str) -> tuple[int, str, bytes]:
        parts = request_line.split()
        if len(parts) != 3:
            return 400, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if target == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest()
        if target == "/health":
            alive = not self._runner.finished
            return (200 if alive else 503), "application/json", orjson.dumps({"alive": alive})
        if target == "/ready":
            checks = await self._runner.readiness()
            ready = all(checks.values())
            return (200 if ready else 503), "application/json", orjson.dumps({"ready": ready, "checks": checks})
        return 404, "text/plain", b"not found\n"
