"""Reading a request body within a size limit, decompressing on the fly (a bomb stops early).

Encodings: identity, gzip (``x-gzip``), deflate and zstd.  Every decompressor is asked for at most
``limit + 1 - len(out)`` bytes per call, so no call inflates past the limit: memory stays within about
``limit`` plus one network chunk whatever the compression ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Protocol

import zstandard

__all__ = ["SUPPORTED_ENCODINGS", "BodyTooLarge", "UnsupportedEncoding", "read_body"]

SUPPORTED_ENCODINGS = ("identity", "gzip", "deflate", "zstd")


class BodyTooLarge(Exception):
    """More than the limit after decompression (413)."""


class UnsupportedEncoding(Exception):
    """A Content-Encoding we do not speak (415)."""


class _Inflater(Protocol):
    def feed(self, chunk: bytes, room: int) -> bytes: ...
    def more(self, room: int) -> bytes: ...
    def finish(self) -> bytes: ...


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)

    def feed(self, chunk: bytes, room: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail + chunk, room)

    def more(self, room: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail, room) if self._d.unconsumed_tail else b""

    def finish(self) -> bytes:
        if not self._d.eof:
            raise zlib.error("truncated stream")
        return self._d.flush()


class _Zstd:
    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._pending = b""

    def feed(self, chunk: bytes, room: int) -> bytes:
        # zstandard's decompressobj has no output cap per call: feed 64-byte slices (a zstd block of at
        # most 128 KB needs at least 4 bytes, so one slice inflates to at most 2 MB) and stop at the limit.
        self._pending += chunk
        return self.more(room)

    def more(self, room: int) -> bytes:
        out = bytearray()
        while self._pending and len(out) < room:
            piece, self._pending = self._pending[:64], self._pending[64:]
            out += self._d.decompress(piece)
        return bytes(out)

    def finish(self) -> bytes:
        if not self._d.eof:
            raise zstandard.ZstdError("truncated stream")
        return b""


def _inflater(encoding: str) -> _Inflater | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if encoding == "zstd":
        return _Zstd()
    raise UnsupportedEncoding(encoding)


async def read_body(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    """The decompressed body; :class:`BodyTooLarge` past ``limit``, ``ValueError`` for corrupt data."""
    encoding = encoding.strip().lower()
    inflate = _inflater(encoding)
    if inflate is None:
        return await _read_plain(chunks, limit)
    out = bytearray()
    try:
        async for chunk in chunks:
            out += inflate.feed(chunk, limit + 1 - len(out))
            while len(out) <= limit and (data := inflate.more(limit + 1 - len(out))):
                out += data
            if len(out) > limit:
                raise BodyTooLarge()
        out += inflate.finish()
    except (zlib.error, zstandard.ZstdError) as exc:
        raise ValueError(f"body: invalid {encoding} data") from exc
    if len(out) > limit:
        raise BodyTooLarge()
    return bytes(out)


async def _read_plain(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """An uncompressed body: its chunks joined once (usually there is one, returned as is)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
