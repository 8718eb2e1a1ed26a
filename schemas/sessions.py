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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from schemas.records import EventRecord

if TYPE_CHECKING:  # schemas.rows imports this module
    from schemas.rows import JourneyRowValues

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
    "journey_session_json_row",
    "journey_session_tombstone_json_row",
    "journey_step_key",
    "journey_token",
    "live_event",
    "live_key",
    "minute_of",
    "parse_journey_token",
    "session_json_row",
    "session_tombstone_json_row",
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


@dataclass(slots=True)
class LiveEvent:
    """What sessionization needs of one event.  Order: (ts_ms, sequence, received_ms, offset, event_id).

    Treated as immutable (change one with ``dataclasses.replace``) but not ``frozen``: the sessions processor
    builds one per event, and a frozen dataclass costs about six times as much to construct."""

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

    @property
    def order(self) -> tuple[int, int, int, int, str]:
        """Computed when asked (sorting asks once per event): a stored tuple per event made the cyclic GC
        run more often, for a key most events of a batch never need."""
        return (self.ts_ms, self.sequence, self.received_ms, self.offset, self.event_id)

    def pack(self) -> bytes:
        """The hash value (the event id is the field name); trailing empty values are left out, so a value
        packed before journeys existed (at most 10 elements) still unpacks, with no journeys."""
        return _kept(self._packed())

    def pack_text(self) -> str:
        """:meth:`pack` as text (what the sessions processor sends to Redis and caches)."""
        return self._packed().decode()

    def _packed(self) -> bytes:
        if self.journeys:
            return _dumps([self.ts_ms, self.sequence, self.received_ms, self.offset, self.event_type, self.page,
                           self.user_id, self.device, self.browser, self.os, self.journeys])  # fmt: skip
        head = (self.ts_ms, self.sequence, self.received_ms, self.offset, self.event_type)
        if self.os or self.browser or self.device:
            tail = (self.page, self.user_id, self.device, self.browser, self.os)
            n = 5
            while not tail[n - 1]:
                n -= 1
            return _dumps(head + tail[:n])
        if self.user_id:
            return _dumps((*head, self.page, self.user_id))
        return _dumps((*head, self.page)) if self.page else _dumps(head)

    @classmethod
    def unpack(cls, event_id: str, raw: bytes | str) -> LiveEvent:
        v = _loads(raw)
        if type(v) is not list or len(v) < 5:
            raise ValueError(f"live event {event_id!r}: not a packed event")
        if len(v) < 10:
            v += [""] * (10 - len(v))
        journeys = tuple(str(t) for t in v[10]) if len(v) > 10 and type(v[10]) is list else ()
        return cls(event_id, int(v[0]), int(v[1]), int(v[2]), int(v[3]), str(v[4]), str(v[5]), str(v[6]),
                   str(v[7]), str(v[8]), str(v[9]), journeys)  # fmt: skip


_dumps = orjson.dumps
_loads = orjson.loads


def _kept(value: bytes) -> bytes:
    """A copy of an ``orjson.dumps`` result that is kept (a row until its insert, a packed event until its
    save): orjson returns each result in a buffer of about 1 KB, and keeping thousands of those costs the
    allocator ~2.5 us each on this machine (measured: 0.5 us with an immediate copy), more than the dump."""
    return bytes(memoryview(value))


def _kept_dumps(value: Any) -> bytes:
    return bytes(memoryview(_dumps(value)))


def _attribute(sources: tuple[dict[str, Any], ...], keys: tuple[str, ...]) -> str:
    for source in sources:
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
    device = browser = os_ = ""
    if record.extra or record.metadata:
        sources = (record.extra, record.metadata)
        device = _attribute(sources, DEVICE_KEYS)
        browser = _attribute(sources, BROWSER_KEYS)
        os_ = _attribute(sources, OS_KEYS)
    return LiveEvent(
        record.event_id,
        record.ts_ms,
        sequence if type(sequence) is int else 0,
        record.received_ms,
        offset,
        record.event_type,
        page if type(page) is str else "",
        user if type(user) is str else "",
        device,
        browser,
        os_,
        journeys,
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


@dataclass(slots=True)
class SessionSummary:
    """The attributes of one session segment (analytics-semantics.md, precise rule 3).  Treated as immutable;
    not ``frozen`` for the same reason as :class:`LiveEvent` (one per changed segment per flush)."""

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


# ClickHouse rows as ``JSONEachRow`` lines, what the sessions processor sends: the same stored values as
# schemas.rows.session_row / journey_session_row and their tombstones (tests/integration/
# test_processor_sessions.py compares both forms column by column), at a fraction of the processor's CPU of
# clickhouse-connect's Native encoding.  Keys are the columns in schemas.rows order; times are seconds with
# three decimals, which ClickHouse reads into DateTime64(3) exactly (see schemas.rows.event_json_row).


def session_json_row(
    org_id: str,
    project_id: str,
    session_id: str,
    s: SessionSummary,
    version: int,
    journey: tuple[str, str, str] = ("", "", ""),
) -> bytes:
    """:func:`schemas.rows.session_row` as a ``JSONEachRow`` line."""
    return _kept_dumps(
        {
            "org_id": org_id,
            "project_id": project_id,
            "session_id": session_id,
            "segment": s.segment,
            "version": version,
            "is_deleted": 0,
            "started_at": s.started_ms / 1000,
            "ended_at": s.ended_ms / 1000,
            "duration_ms": s.ended_ms - s.started_ms,
            "entry_page": s.entry_page,
            "exit_page": s.exit_page,
            "page_views": s.page_views,
            "unique_pages": s.unique_pages,
            "event_count": s.event_count,
            "error_count": s.error_count,
            "user_id": s.user_id,
            "device": s.device,
            "browser": s.browser,
            "os": s.os,
            "journey_id": journey[0],
            "last_journey_step_id": journey[1],
            "conversion_status": journey[2],
        }
    )


def session_tombstone_json_row(
    org_id: str, project_id: str, session_id: str, segment: int, version: int, at_ms: int
) -> bytes:
    """:func:`schemas.rows.session_tombstone_row` as a ``JSONEachRow`` line."""
    at = at_ms / 1000
    return _dumps(
        {
            "org_id": org_id,
            "project_id": project_id,
            "session_id": session_id,
            "segment": segment,
            "version": version,
            "is_deleted": 1,
            "started_at": at,
            "ended_at": at,
            "duration_ms": 0,
            "entry_page": "",
            "exit_page": "",
            "page_views": 0,
            "unique_pages": 0,
            "event_count": 0,
            "error_count": 0,
            "user_id": "",
            "device": "",
            "browser": "",
            "os": "",
            "journey_id": "",
            "last_journey_step_id": "",
            "conversion_status": "",
        }
    )


def journey_session_json_row(
    org_id: str, project_id: str, session_id: str, segment: int, version: int, v: JourneyRowValues
) -> bytes:
    """:func:`schemas.rows.journey_session_row` as a ``JSONEachRow`` line."""
    times = [t / 1000 for t in v.step_times]
    return _kept_dumps(
        {
            "org_id": org_id,
            "project_id": project_id,
            "journey_id": v.journey_id,
            "session_id": session_id,
            "segment": segment,
            "version": version,
            "is_deleted": 0,
            "status": v.status,
            "steps_reached": len(times),
            "step_count": v.step_count,
            "last_step_position": v.last_step_position,
            "last_step_id": v.last_step_id,
            "entered_at": times[0],
            "step_times": times,
            "converted_at": times[-1] if v.status == "converted" else None,
            "duration_ms": v.step_times[-1] - v.step_times[0],
            "attempts": v.attempts,
            "closes_at": v.closes_at_ms / 1000,
        }
    )


def journey_session_tombstone_json_row(
    org_id: str, project_id: str, journey_id: str, session_id: str, segment: int, version: int, at_ms: int
) -> bytes:
    """:func:`schemas.rows.journey_session_tombstone_row` as a ``JSONEachRow`` line."""
    at = at_ms / 1000
    return _dumps(
        {
            "org_id": org_id,
            "project_id": project_id,
            "journey_id": journey_id,
            "session_id": session_id,
            "segment": segment,
            "version": version,
            "is_deleted": 1,
            "status": "",
            "steps_reached": 0,
            "step_count": 0,
            "last_step_position": 0,
            "last_step_id": "",
            "entered_at": at,
            "step_times": [],
            "converted_at": None,
            "duration_ms": 0,
            "attempts": 0,
            "closes_at": at,
        }
    )
