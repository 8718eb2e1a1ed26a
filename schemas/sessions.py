"""Session wire formats: the Redis layout of a live session and the attributes of one session segment.

Redis, per ``(project_id, session.id)`` (both keys share one TTL, refreshed whenever the session changes):

* ``session:{project_id}:{session_id}`` (hash): the live view of the newest segment, read by the query API
  (:data:`LIVE_VIEW_FIELDS`), plus the sessionizer's bookkeeping (:data:`LEDGER_FIELDS`).
* ``session:{project_id}:{session_id}:events`` (hash): ``event_id`` → :class:`LiveEvent` (packed), the
  events of the segments that a late event may still change, each with the journey steps it matched
  (:attr:`LiveEvent.journeys`, computed when the event was processed, with the journeys known then).

Real-time counters, per project (written by the sessions processor in the same script as the session
state, so a replayed batch, which finds its events already stored, changes none of them; read by the query
API through ``query_api.tenant_scope.redis_key(tenant, "rt", ...)``, i.e. ``rt:{project_id}:...``):

* ``rt:{project_id}:epm:{minute}`` (string): events per minute of event time, ``minute = ts_ms // 60_000``;
* ``rt:{project_id}:active_sessions`` / ``rt:{project_id}:active_users`` (sorted sets): member = session
  id / user (``user.id``, else ``anon:<user.anonymous_id>``, else ``session:<session id>``), score = the
  member's newest event time in ms (``ZADD GT``), trimmed of members older than :data:`RT_ACTIVE_KEEP_MS`;
* ``rt:{project_id}:journey:{journey_id}:step:{position}:{minute}`` (string): step entries per minute.

Minute counters expire :data:`RT_TTL_S` after their minute.

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
    "RT_ACTIVE_KEEP_MS",
    "RT_TTL_S",
    "LiveEvent",
    "SessionSummary",
    "active_sessions_key",
    "active_users_key",
    "epm_key",
    "events_key",
    "journey_step_key",
    "journey_token",
    "live_event",
    "live_key",
    "minute_of",
    "parse_journey_token",
    "user_identity",
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
LEDGER_FIELDS: tuple[str, ...] = ("segments", "sealed", "sealed_end_ms", "frontier_ms", "version", "journey_entries")
# ``journey_entries``: JSON array of the journey step entries of the live segments already added to the
# per-minute step counters ("segment|journey_id|position|entered_ms"), see stream_processors.sessions.

RT_TTL_S = 2 * 3600  # per-minute counters live this long after their minute (the query API reads 60 minutes)
RT_ACTIVE_KEEP_MS = 10 * 60_000  # members of the active sets are kept this long after their last event (5 min + margin)

# Where device, browser and OS may arrive: unknown top-level keys (``extra``) first, then ``metadata``.
DEVICE_KEYS = ("device.type", "device_type", "device")
BROWSER_KEYS = ("browser.name", "browser")
OS_KEYS = ("os.name", "os")


def live_key(project_id: str, session_id: str) -> str:
    return f"session:{project_id}:{session_id}"


def events_key(project_id: str, session_id: str) -> str:
    return f"session:{project_id}:{session_id}:events"


def minute_of(ts_ms: int) -> int:
    """The minute number of a time: Unix ms // 60,000 (the query API's ``minute_range``)."""
    return ts_ms // 60_000


def epm_key(project_id: str, minute: int) -> str:
    return f"rt:{project_id}:epm:{minute}"


def active_sessions_key(project_id: str) -> str:
    return f"rt:{project_id}:active_sessions"


def active_users_key(project_id: str) -> str:
    return f"rt:{project_id}:active_users"


def journey_step_key(project_id: str, journey_id: str, position: int, minute: int) -> str:
    return f"rt:{project_id}:journey:{journey_id}:step:{position}:{minute}"


def journey_token(journey_id: str, position: int) -> str:
    """What :attr:`LiveEvent.journeys` holds for "this event matches step ``position`` of the journey"."""
    return f"{journey_id}/{position}"


def parse_journey_token(token: str) -> tuple[str, int]:
    journey_id, _, position = token.rpartition("/")
    return journey_id, int(position)


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
    journeys: tuple[str, ...] = ()  # journey steps the event matched (:func:`journey_token`), sorted
    order: tuple[int, int, int, int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", (self.ts_ms, self.sequence, self.received_ms, self.offset, self.event_id))

    def pack(self) -> bytes:
        """The hash value (the event id is the field name); trailing empty values are left out, so a value
        packed before journeys existed (at most 10 elements) still unpacks, with no journeys."""
        values: list[Any] = [self.ts_ms, self.sequence, self.received_ms, self.offset, self.event_type]
        tail: list[Any] = [self.page, self.user_id, self.device, self.browser, self.os]
        if self.journeys:
            tail.append(list(self.journeys))
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
        journeys = tuple(str(t) for t in v[10]) if len(v) > 10 and isinstance(v[10], list) else ()
        page, user, device, browser, os_ = strings
        return cls(
            event_id, int(v[0]), int(v[1]), int(v[2]), int(v[3]), str(v[4]), page, user, device, browser, os_, journeys
        )


def _attribute(record: EventRecord, keys: tuple[str, ...]) -> str:
    if not record.extra and not record.metadata:
        return ""
    for source in (record.extra, record.metadata):
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value:
                return value[:255]
    return ""


def live_event(record: EventRecord, offset: int = 0, journeys: tuple[str, ...] = ()) -> LiveEvent:
    """The :class:`LiveEvent` of a record delivered at ``offset`` of its partition, with the journey steps
    it matched (:func:`stream_processors.journeys.match_tokens`)."""
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
        journeys=journeys,
    )


def user_identity(record: EventRecord) -> str:
    """The "user" of an event for the active-users set (rule 4 without merging): ``user.id``, else the
    anonymous id, else the session."""
    user = record.fields.get("user.id")
    if isinstance(user, str) and user:
        return user
    anonymous = record.fields.get("user.anonymous_id")
    if isinstance(anonymous, str) and anonymous:
        return f"anon:{anonymous}"
    return f"session:{record.session_id}"


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
