"""Opaque page cursors for session search and replay (pure).

A cursor is the sort key of the last row of a page (keyset pagination: no OFFSET, so a page costs the
same wherever it is, and rows inserted before the cursor position never shift later pages).  It travels
as URL-safe base64 of a small JSON array whose first element names its kind, so a search cursor cannot
be fed to a replay and a replay cursor names the session and segment it belongs to.  Callers must treat
it as opaque; anything that does not decode to the expected shape is an :class:`InvalidInput`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from query_api.errors import InvalidInput

__all__ = ["EventCursor", "SessionCursor", "decode_event_cursor", "decode_session_cursor", "encode"]

_MAX_CURSOR_CHARS = 4096


@dataclass(frozen=True, slots=True)
class SessionCursor:
    """Position after a search row: order is (started_at desc, session_id, segment)."""

    started_ms: int
    session_id: str
    segment: int


@dataclass(frozen=True, slots=True)
class EventCursor:
    """Position after a replay event: order is (timestamp, sequence, received_at, event_id)."""

    session_id: str
    segment: int | None
    ts_ms: int
    sequence: int
    received_ms: int
    event_id: str


def encode(cursor: SessionCursor | EventCursor) -> str:
    if isinstance(cursor, SessionCursor):
        raw = ["s", cursor.started_ms, cursor.session_id, cursor.segment]
    else:
        c = cursor
        raw = ["e", c.session_id, c.segment, c.ts_ms, c.sequence, c.received_ms, c.event_id]
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


def _decode(text: str, kind: str, length: int) -> list[object]:
    bad = InvalidInput("after: not a cursor of this list")
    if len(text) > _MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    if not isinstance(raw, list) or len(raw) != length or raw[0] != kind:
        raise bad
    return raw


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**62) < value < 2**62:
        raise InvalidInput("after: not a cursor of this list")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("after: not a cursor of this list")
    return value


def decode_session_cursor(text: str) -> SessionCursor:
    raw = _decode(text, "s", 4)
    return SessionCursor(_int(raw[1]), _str(raw[2]), _int(raw[3]))


def decode_event_cursor(text: str, session_id: str, segment: int | None) -> EventCursor:
    """A replay cursor, which must belong to the same session and segment selection."""
    raw = _decode(text, "e", 7)
    seg = None if raw[2] is None else _int(raw[2])
    c = EventCursor(_str(raw[1]), seg, _int(raw[3]), _int(raw[4]), _int(raw[5]), _str(raw[6]))
    if c.session_id != session_id or c.segment != segment:
        raise InvalidInput("after: the cursor belongs to another session replay")
    return c
