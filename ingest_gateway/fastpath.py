"""``POST /v1/events`` straight from ASGI to the service, before FastAPI's routing and request wrappers.

The FastAPI route stays: it documents the contract in OpenAPI and gives the same answers; this middleware
answers those requests first, which spares a tenth or so of the gateway's CPU per request.  Everything
else (``OPTIONS``, other methods and paths) goes on to FastAPI.  A client that disconnects mid-body gets
no answer and nothing of its request is accepted.  The gateway's app calls :meth:`IngestFastPath.handle`
even before FastAPI's own middleware (error and telemetry wrappers, body limit), see ``app.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from ingest_gateway.service import IngestService

__all__ = ["IngestFastPath"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away before the body was complete."""


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class IngestFastPath:
    def __init__(self, app: ASGIApp, service: IngestService, path: str = "/v1/events") -> None:
        self.app = app
        self._service = service
        self._path = path

    def handles(self, scope: Scope) -> bool:
        return bool(scope["type"] == "http" and scope["path"] == self._path and scope["method"] == "POST")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.handles(scope):
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ``POST`` to the ingest path."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            reply = await self._service.ingest(headers, _chunks(receive))
        except _Disconnected:
            return
        body = reply.encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
