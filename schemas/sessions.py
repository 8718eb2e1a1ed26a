"""Session wire formats: the Redis layout of a live session and the attributes of one session segment.

Redis, per ``(project_id, session.id)`` (both keys share one TTL, refreshed whenever the session changes):

* ``session:{project_id}:{session_id}`` (hash): the live view of the newest segment, read by the query API
  (:data:`LIVE_VIEW_FIELDS`), plus the sessionizer's bookkeeping (:data:`LEDGER_FIELDS`).
* ``session:{project_id}:{session_id}:events`` (hash): ``event_id`` → :class:`LiveEvent` (packed), the
  events of the segments that a late event may still change.

ClickHouse ``sessions`` rows are built from :class:`SessionSummary` by :func:`schemas.rows.session_row`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.records import EventRecord

__all__ = [
    "LEDGER_FIELDS",
    "LIVE_VIEW_FIELDS",
    "LiveEvent",
    "SessionSummary",
    "events_key",
    "live_event",
    "live_key",
]

# Hash fields of ``session:{p}:{s}`` the query API reads (query_api/context.py live_session).
LIVE_VIEW_FIELDS: tuple[str, ...] = (
    "event_count",
    "started_ms",
    "last_ms",
    "user_id",  # absent while the segment has no user id
    "current_page",  # the segment's exit page so far (page.view), absent without one
    "last_event_type",
    "page_views",
    "error_count",
    "segment",  # number of the newest segment
    "closes_at_ms",  # last_ms + timeout: the segment is open until then (unless a later one starts)
)
# The sessionizer's bookkeeping in the same hash (stream_processors.sessionize.Ledger).
LEDGER_FIELDS: tuple[str, ...] = ("segments", "sealed", "sealed_end_ms", "frontier_ms", "version")

# Where device, browser and OS may arrive: unknown top-level keys (``extra``) first, then ``metadata``.
DEVICE_KEYS = ("device.type", "device_type", "device")
BROWSER_KEYS = ("browser.name", "browser")
OS_KEYS = ("os.name", "os")


def live_key(project_id: str, session_id: str) -> str:
    return f"session:{project_id}:{session_id}"


def events_key(project_id: str, session_id: str) -> str:
    return f"session:{project_id}:{session_id}:events"


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """What sessionization needs of one event.  Order: (ts_ms, sequence, received_ms, offset, event_id)."""

    event_id: str
    ts_ms: int
    sequence: int = 0  # event.sequence, missing = 0
    received_ms: int = 0  # receive order, first part: when the gateway received it
    offset: int = 0  # receive order, second part: position in its Kafka partition (first delivery)
    event_type: str = ""
    page: str = ""  # page.path of a page.view event, else ""
    user_id: str = ""
    device: str = ""
    browser: str = ""
    os: str = ""
    order: tuple[int, int, int, int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", (self.ts_ms, self.sequence, self.received_ms, self.offset, self.event_id))

    def pack(self) -> bytes:
        """The hash value (the event id is the field name); trailing empty strings are left out."""
        values: list[Any] = [self.ts_ms, self.sequence, self.received_ms, self.offset, self.event_type]
        tail = [self.page, self.user_id, self.device, self.browser, self.os]
        while tail and not tail[-1]:
            tail.pop()
        return orjson.dumps(values + tail)

    @classmethod
    def unpack(cls, event_id: str, raw: bytes | str) -> LiveEvent:
        v = orjson.loads(raw)
        if not isinstance(v, list) or len(v) < 5:
            raise ValueError(f"live event {event_id!r}: not a packed event")
        strings = [str(s) for s in v[5:10]]
        strings += [""] * (5 - len(strings))
        return cls(event_id, int(v[0]), int(v[1]), int(v[2]), int(v[3]), str(v[4]), *strings)


def _attribute(record: EventRecord, keys: tuple[str, ...]) -> str:
    if not record.extra and not record.metadata:
        return ""
    for source in (record.extra, record.metadata):
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value:
                return value[:255]
    return ""


def live_event(record: EventRecord, offset: int = 0) -> LiveEvent:
    """The :class:`LiveEvent` of a record delivered at ``offset`` of its partition."""
    f = record.fields
    sequence = f.get("event.sequence")
    page = f.get("page.path") if record.event_type == "page.view" else ""
    user = f.get("user.id")
    return LiveEvent(
        event_id=record.event_id,
        ts_ms=record.ts_ms,
        sequence=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else 0,
        received_ms=record.received_ms,
        offset=offset,
        event_type=record.event_type,
        page=page if isinstance(page, str) else "",
        user_id=user if isinstance(user, str) else "",
        device=_attribute(record, DEVICE_KEYS),
        browser=_attribute(record, BROWSER_KEYS),
        os=_attribute(record, OS_KEYS),
    )


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """The attributes of one session segment (analytics-semantics.md, precise rule 3)."""

    segment: int  # from 1
    started_ms: int
    ended_ms: int
    event_count: int
    page_views: int
    unique_pages: int
    error_count: int
    entry_page: str = ""
    exit_page: str = ""
    user_id: str = ""
    device: str = ""
    browser: str = ""
    os: str = ""

    @property
    def duration_ms(self) -> int:
        return self.ended_ms - self.started_ms
