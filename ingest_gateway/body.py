"""Reading a request body within a size limit, decompressing gzip on the fly (a bomb stops early)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

__all__ = ["BodyTooLarge", "UnsupportedEncoding", "read_body"]


class BodyTooLarge(Exception):
    """More than the limit after decompression (413)."""


class UnsupportedEncoding(Exception):
    """A Content-Encoding we do not speak (415)."""


async def read_body(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        inflate = None
    elif encoding in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflate = zlib.decompressobj()
    else:
        raise UnsupportedEncoding(encoding)
    out = bytearray()
    try:
        async for chunk in chunks:
            if inflate is None:
                out += chunk
            else:
                # max_length caps what one call may produce, so a bomb never inflates past the limit.
                data = inflate.decompress(inflate.unconsumed_tail + chunk, limit + 1 - len(out))
                out += data
                while inflate.unconsumed_tail and len(out) <= limit:
                    out += inflate.decompress(inflate.unconsumed_tail, limit + 1 - len(out))
            if len(out) > limit:
                raise BodyTooLarge()
        if inflate is not None:
            out += inflate.flush()
    except zlib.error as exc:
        raise ValueError(f"body: invalid {encoding} data") from exc
    if len(out) > limit:
        raise BodyTooLarge()
    return bytes(out)
