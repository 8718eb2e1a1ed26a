"""One pipelined Redis connection for the gateway's hot path: an asyncio protocol and hiredis, no redis-py.

Why: through redis-py, one ``EVALSHA`` cost the gateway ~130 µs of CPU (connection pool, retry wrapper,
argument encoding, response parsing in Python), more than a microsecond per event at batches of 100.
Here a command is packed by hiredis and written at once; the requests in flight share the connection
(Redis answers in order, so replies go to the waiting futures first in, first out).

Failure: a broken connection fails every command waiting on it with ``ConnectionError``; the next
command opens a new connection.  A caller that gives up on a command (timeout) calls :meth:`RedisPipe.reset`, which
drops the connection, so a stuck server cannot pile up commands.  Redis errors come back as
``hiredis.ReplyError``.  Only plain TCP connections (``redis://``) are spoken; for others (TLS, unix
sockets) :meth:`RedisPipe.for_client` answers None and the caller keeps redis-py.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis

__all__ = ["RedisPipe"]

Arg = str | bytes | int | float


def _pack(args: Sequence[Arg]) -> bytes:
    packed: bytes = hiredis.pack_command(cast(Any, tuple(args)))  # its stub types a 1-tuple
    return packed


class _Connection(asyncio.Protocol):
    """One TCP connection: its replies go to its own waiters, first in, first out."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        reader, waiters = self.reader, self.waiters
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:  # not Redis speaking: drop the connection
                self.close()
                return
            if reply is False:
                return
            if not waiters:  # a reply nobody asked for: the stream is out of step
                self.close()
                return
            future = waiters.popleft()
            if future.done():  # its caller gave up (timeout)
                continue
            if type(reply) is hiredis.ReplyError:
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        waiters, self.waiters = self.waiters, collections.deque()
        for future in waiters:
            if not future.done():
                future.set_exception(ConnectionError(f"redis connection lost ({exc or 'closed'})"))

    def send(self, packed: list[bytes]) -> list[asyncio.Future[Any]]:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionError("redis connection closed")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in packed]
        self.waiters.extend(futures)
        transport.write(packed[0] if len(packed) == 1 else b"".join(packed))
        return futures

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RedisPipe:
    def __init__(
        self, host: str, port: int, *, db: int = 0, username: str | None = None, password: str | None = None
    ) -> None:
        self._host, self._port, self._db = host, port, db
        self._username, self._password = username, password
        self._conn: _Connection | None = None  # ready for commands (connected, authenticated, db selected)
        self._lock = asyncio.Lock()

    @classmethod
    def for_client(cls, client: aioredis.Redis) -> RedisPipe | None:
        """A pipe to the server of a redis-py client, when it speaks plain TCP."""
        pool = client.connection_pool
        if pool.connection_class is not aioredis.Connection:
            return None
        kw = pool.connection_kwargs
        return cls(
            kw.get("host") or "localhost",
            int(kw.get("port") or 6379),
            db=int(kw.get("db") or 0),
            username=kw.get("username"),
            password=kw.get("password"),
        )

    async def call(self, *args: Arg) -> Any:
        """One command's reply."""
        conn = self._conn if self._conn is not None and self._conn.transport is not None else await self._connect()
        return await conn.send([_pack(args)])[0]

    async def call_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """The replies of several commands, written at once; the first error is raised."""
        conn = self._conn if self._conn is not None and self._conn.transport is not None else await self._connect()
        return list(await asyncio.gather(*conn.send([_pack(c) for c in commands])))

    async def _connect(self) -> _Connection:
        async with self._lock:
            if self._conn is not None and self._conn.transport is not None:
                return self._conn
            self._conn = None
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Connection, self._host, self._port)
            try:
                if self._password:
                    auth: tuple[Arg, ...] = (
                        (self._password,) if not self._username else (self._username, self._password)
                    )
                    await conn.send([_pack(("AUTH", *auth))])[0]
                if self._db:
                    await conn.send([_pack(("SELECT", self._db))])[0]
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            return conn

    def reset(self) -> None:
        """Drop the connection (the waiting commands fail); the next command connects again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        self.reset()
