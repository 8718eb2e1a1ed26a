"""Session search and replay as ClickHouse SQL, and the mapping of result rows to typed values (pure).

Every query is read through ``QueryContext.query`` (:func:`query_api.tenant_scope.scoped_query`): each
table read carries ``org_id = {org:UUID} AND project_id = {project:UUID}``, and everything that comes
from the caller (ids, paths, search text, cursor positions, times as epoch ms) is a bound parameter.
Only structure (which filters are present, fixed limits) is written into the text.

Search reads ``sessions FINAL`` (the latest version of each segment; tombstoned segments hidden).  The
event-level filters (page visited, text on actions) need the segment's own events, but ``events`` has
no segment number: the sessionizer's segments never overlap in time (a new segment starts only after a
gap longer than the timeout or past 24 h from the previous start), so "event of segment k" is "event of
the session inside [started_at, ended_at] of k".  A ``hits`` stage collects, per session id, the times
of matching events (in the date range widened by the 24 h a segment may last); a segment qualifies when
one of them falls inside its span.

Replay orders events by (``timestamp``, ``event.sequence`` with missing = 0, ``received_at``,
``event_id``): precise rule 1's total order, with the event id as the last tie-break (the funnels use
the same key), so pages never overlap nor skip an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from query_api.sessions.cursor import EventCursor, SessionCursor, encode
from query_api.sessions.diff import diff_states
from query_api.sessions.model import (
    ApiCall,
    ErrorEntry,
    PageTransition,
    ReplayEvent,
    ResolvedFilter,
    SegmentSummary,
    Timeline,
)
from schemas.fields import FIELDS
from schemas.rows import SESSION_COLUMNS

__all__ = [
    "EVENT_COLUMNS",
    "SUMMARY_COLUMNS",
    "TIMELINE_CAP",
    "SqlQuery",
    "count_query",
    "event_cursor",
    "events_query",
    "exists_query",
    "replay_event",
    "search_query",
    "segments_query",
    "session_cursor",
    "summary",
    "timeline",
    "timeline_query",
]

SEGMENT_MAX_MS = 24 * 3600 * 1000  # a segment never lasts longer (precise rule 2)
TIMELINE_CAP = 1000  # page transitions, API calls and errors each: at most this many per replay

# Summary columns of ``sessions`` (all of SESSION_COLUMNS except the tenant and versioning bookkeeping).
SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    c for c in SESSION_COLUMNS if c not in ("org_id", "project_id", "version", "is_deleted")
)
_BASE_EVENT_COLUMNS = ("event_id", "event_type", "timestamp", "client_timestamp", "received_at")
EVENT_COLUMNS: tuple[str, ...] = (*_BASE_EVENT_COLUMNS, *(f.column for f in FIELDS), "metadata", "extra")
# What a replay page needs when the caller asks for none of ``attributes``, ``metadata``, ``extra``: the other
# event fields, the order key and the state diff's inputs.  Each column read costs a block decompressed per
# matching granule, so a typical replay reads 18 columns instead of 55.  The timeline's columns are in both
# sets: a page that holds a whole session (or segment) gives its timeline too (:func:`timeline_from_events`).
NARROW_EVENT_COLUMNS: tuple[str, ...] = (
    *_BASE_EVENT_COLUMNS, "event_name", "event_sequence", "page_path", "ui_state_key", "ui_state_before",
    "ui_state_after", "api_method", "api_path", "api_status_code", "api_duration_ms", "error_message", "error_type",
    "error_component",
)  # fmt: skip
_FIELD_BY_COLUMN = {f.column: f.name for f in FIELDS}
_ORDER = "timestamp, ifNull(event_sequence, 0), received_at, event_id"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TENANT = "org_id = {org:UUID} AND project_id = {project:UUID}"
# The processors store a segment's journey status in closed form (bounced/dropped, never pending), so that
# the stored row depends on the segment's events only; a segment whose last event is within the session
# timeout (default 30 min) may still continue, and reads as pending until then.
OPEN_MINUTES = 30


def _status(t: str = "") -> str:
    return (
        f"if({t}conversion_status IN ('bounced', 'dropped') AND {t}ended_at + INTERVAL {OPEN_MINUTES} MINUTE "
        f">= now64(3), 'pending', {t}conversion_status)"
    )


def _summary_columns(t: str = "") -> str:
    return ", ".join(f"{_status(t)} AS conversion_status" if c == "conversion_status" else f"{t}{c}"
                     for c in SUMMARY_COLUMNS)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SqlQuery:
    sql: str
    params: dict[str, Any]


def _ms(value: datetime) -> int:
    """Exact epoch milliseconds (``timestamp() * 1000`` can round a stored millisecond down)."""
    return (_utc(value) - _EPOCH) // timedelta(milliseconds=1)


def _ts(param: str) -> str:
    return f"fromUnixTimestamp64Milli({{{param}:Int64}}, 'UTC')"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- search ---------------------------------------------------------------------------------------------


def _search_where(f: ResolvedFilter, params: dict[str, Any]) -> tuple[str, str]:
    """(the optional ``hits`` stage with its JOIN, the WHERE conditions on ``s``)."""
    params["date_from"] = _ms(f.date_from)
    params["date_to"] = _ms(f.date_to)
    conds = [
        "s.org_id = {org:UUID} AND s.project_id = {project:UUID}",
        "s.is_deleted = 0",
        f"s.started_at >= {_ts('date_from')}",
        f"s.started_at < {_ts('date_to')}",
    ]
    if f.user_id is not None:
        params["user_id"] = f.user_id
        conds.append("s.user_id = {user_id:String}")
    if f.journey_id is not None:
        params["journey_id"] = f.journey_id
        conds.append("s.journey_id = {journey_id:String}")
    if f.journey_status is not None:
        params["journey_status"] = f.journey_status
        conds.append(f"{_status('s.')} = {{journey_status:String}}")
    if f.has_error is not None:
        conds.append("s.error_count > 0" if f.has_error else "s.error_count = 0")
    if f.min_duration_ms is not None:
        params["min_duration"] = f.min_duration_ms
        conds.append("s.duration_ms >= {min_duration:UInt64}")
    if f.max_duration_ms is not None:
        params["max_duration"] = f.max_duration_ms
        conds.append("s.duration_ms <= {max_duration:UInt64}")

    hit_kinds: list[tuple[str, str]] = []
    if f.page is not None:
        params["page"] = f.page
        path = "page_path = {page:String}" if f.page_match == "exact" else "startsWith(page_path, {page:String})"
        hit_kinds.append(("page_hits", f"(event_type = 'page.view' AND {path})"))
    if f.text is not None:
        params["text"] = f.text
        hit_kinds.append(
            (
                "text_hits",
                "(positionCaseInsensitiveUTF8(ui_action, {text:String}) > 0 "
                "OR positionCaseInsensitiveUTF8(ui_component_name, {text:String}) > 0 "
                "OR positionCaseInsensitiveUTF8(event_name, {text:String}) > 0)",
            )
        )
    if not hit_kinds:
        return "", " AND ".join(conds)
    params["scan_to"] = params["date_to"] + SEGMENT_MAX_MS + 1
    arrays = ", ".join(f"groupArrayIf(timestamp, {cond}) AS {name}" for name, cond in hit_kinds)
    any_hit = " OR ".join(cond for _, cond in hit_kinds)
    hits = (
        f"WITH hits AS (\n    SELECT session_id, {arrays}\n    FROM events\n"
        f"    WHERE {_TENANT} AND timestamp >= {_ts('date_from')} AND timestamp < {_ts('scan_to')}\n"
        f"      AND ({any_hit})\n    GROUP BY session_id\n)\n"
    )
    conds += [f"arrayExists(t -> t >= s.started_at AND t <= s.ended_at, h.{name})" for name, _ in hit_kinds]
    return hits, " AND ".join(conds)


def search_query(f: ResolvedFilter, after: SessionCursor | None, limit: int) -> SqlQuery:
    """One page of segments, newest first; ``limit`` should be the page size + 1 (to see a next page)."""
    params: dict[str, Any] = {"limit": limit}
    hits, where = _search_where(f, params)
    if after is not None:
        params.update(c_ts=after.started_ms, c_sid=after.session_id, c_seg=after.segment)
        where += (
            " AND (toUnixTimestamp64Milli(s.started_at) < {c_ts:Int64} OR (toUnixTimestamp64Milli(s.started_at) = "
            "{c_ts:Int64} AND (s.session_id, s.segment) > ({c_sid:String}, {c_seg:UInt32})))"
        )
    join = "INNER JOIN hits AS h ON h.session_id = s.session_id\n" if hits else ""
    cols = _summary_columns("s.")
    sql = (
        f"{hits}SELECT {cols}\nFROM sessions AS s FINAL\n{join}WHERE {where}\n"
        "ORDER BY s.started_at DESC, s.session_id, s.segment\nLIMIT {limit:UInt32}"
    )
    return SqlQuery(sql, params)


def count_query(f: ResolvedFilter) -> SqlQuery:
    params: dict[str, Any] = {}
    hits, where = _search_where(f, params)
    join = "INNER JOIN hits AS h ON h.session_id = s.session_id\n" if hits else ""
    return SqlQuery(f"{hits}SELECT count()\nFROM sessions AS s FINAL\n{join}WHERE {where}", params)


def summary(row: tuple[Any, ...] | list[Any]) -> SegmentSummary:
    """A row of :data:`SUMMARY_COLUMNS`."""
    v = dict(zip(SUMMARY_COLUMNS, row, strict=True))
    return SegmentSummary(
        session_id=str(v["session_id"]),
        segment=int(v["segment"]),
        started_at=_utc(v["started_at"]),
        ended_at=_utc(v["ended_at"]),
        duration_ms=int(v["duration_ms"]),
        entry_page=str(v["entry_page"]),
        exit_page=str(v["exit_page"]),
        page_views=int(v["page_views"]),
        unique_pages=int(v["unique_pages"]),
        event_count=int(v["event_count"]),
        error_count=int(v["error_count"]),
        user_id=str(v["user_id"]),
        device=str(v["device"]),
        browser=str(v["browser"]),
        os=str(v["os"]),
        journey_id=str(v["journey_id"]),
        last_journey_step_id=str(v["last_journey_step_id"]),
        conversion_status=str(v["conversion_status"]),
    )


def session_cursor(s: SegmentSummary) -> str:
    return encode(SessionCursor(_ms(s.started_at), s.session_id, s.segment))


# --- replay ---------------------------------------------------------------------------------------------


def segments_query(session_id: str, segment: int | None) -> SqlQuery:
    """The session's live segments (or the one asked for), by number."""
    params: dict[str, Any] = {"session": session_id}
    where = f"{_TENANT} AND session_id = {{session:String}} AND is_deleted = 0"
    if segment is not None:
        params["segment"] = segment
        where += " AND segment = {segment:UInt32}"
    return SqlQuery(f"SELECT {_summary_columns()} FROM sessions FINAL WHERE {where} ORDER BY segment", params)


def exists_query(session_id: str) -> SqlQuery:
    """Any stored event of the session (for a session the sessionizer has not written yet)."""
    return SqlQuery(
        f"SELECT 1 FROM events WHERE {_TENANT} AND session_id = {{session:String}} LIMIT 1", {"session": session_id}
    )


def _span_where(session_id: str, span: tuple[datetime, datetime] | None, params: dict[str, Any]) -> str:
    params["session"] = session_id
    where = f"{_TENANT} AND session_id = {{session:String}}"
    if span is not None:
        params["span_from"], params["span_to"] = _ms(span[0]), _ms(span[1])
        where += f" AND timestamp >= {_ts('span_from')} AND timestamp <= {_ts('span_to')}"
    return where


def events_query(
    session_id: str,
    span: tuple[datetime, datetime] | None,
    after: EventCursor | None,
    limit: int,
    columns: tuple[str, ...] = EVENT_COLUMNS,
) -> SqlQuery:
    """A page of the session's events (``span``: a segment's [started_at, ended_at], None for all);
    ``limit`` should be the page size + 1; ``columns``: :data:`EVENT_COLUMNS` or :data:`NARROW_EVENT_COLUMNS`."""
    params: dict[str, Any] = {"limit": limit}
    where = _span_where(session_id, span, params)
    cursor = ""
    if after is not None:
        params.update(c_ts=after.ts_ms, c_seq=after.sequence, c_rcv=after.received_ms, c_eid=after.event_id)
        cursor = (
            f" WHERE (timestamp, ifNull(event_sequence, 0), received_at, event_id) > "
            f"({_ts('c_ts')}, {{c_seq:Int64}}, {_ts('c_rcv')}, {{c_eid:String}})"
        )
    names = ", ".join(columns)
    sql = f"SELECT {names} FROM ({_first_deliveries(names, where)}){cursor} ORDER BY {_ORDER} LIMIT {{limit:UInt32}}"
    return SqlQuery(sql, params)


def _first_deliveries(columns: str, where: str) -> str:
    """The events of ``where`` (one session), each once: its first delivery in replay order.

    Not ``FINAL``: that merges every part in range at read time (about 3x the cost of the read here), and it
    keeps whichever copy the table merges last.  A redelivered event has the same id and content, at most a
    later receive time, so the first copy in replay order is the first delivery; pages (the cursor) are cut
    after this step, so a later copy never shows on a later page either."""
    return f"SELECT {columns} FROM events WHERE {where} ORDER BY {_ORDER} LIMIT 1 BY event_id"


def replay_event(row: tuple[Any, ...] | list[Any], columns: tuple[str, ...] = EVENT_COLUMNS) -> ReplayEvent:
    """A row of ``columns`` (:func:`events_query`); ``state.change`` events get their diff.  From
    :data:`NARROW_EVENT_COLUMNS`, ``attributes`` hold only the fields read and ``metadata``/``extra`` are empty."""
    v = dict(zip(columns, row, strict=True))
    attributes = {
        _FIELD_BY_COLUMN[c]: x for c in _FIELD_BY_COLUMN if (x := v.get(c)) is not None and x != ""
    }  # fmt: skip
    seq = v["event_sequence"]
    event_type = str(v["event_type"])
    return ReplayEvent(
        event_id=str(v["event_id"]),
        event_type=event_type,
        name=str(v["event_name"]),
        page=str(v["page_path"]),
        timestamp=_utc(v["timestamp"]),
        client_timestamp=None if v["client_timestamp"] is None else _utc(v["client_timestamp"]),
        received_at=_utc(v["received_at"]),
        sequence=None if seq is None else int(seq),
        attributes=attributes,
        metadata={str(k): str(x) for k, x in v.get("metadata", {}).items()},
        extra={str(k): str(x) for k, x in v.get("extra", {}).items()},
        state_diff=diff_states(v["ui_state_before"], v["ui_state_after"]) if event_type == "state.change" else None,
    )


def event_cursor(e: ReplayEvent, session_id: str, segment: int | None) -> str:
    return encode(EventCursor(session_id, segment, _ms(e.timestamp), e.sequence or 0, _ms(e.received_at), e.event_id))


TIMELINE_TYPES = frozenset({"page.view", "api.request", "api.response", "error"})
_TIMELINE_COLUMNS = (
    "event_id", "event_type", "timestamp", "page_path", "api_method", "api_path", "api_status_code",
    "api_duration_ms", "error_message", "error_type", "error_component",
)  # fmt: skip


def timeline_query(session_id: str, span: tuple[datetime, datetime] | None) -> SqlQuery:
    """Page views, API calls and errors in replay order, at most ``TIMELINE_CAP + 1`` of each kind (the
    extra row tells that a list was cut)."""
    params: dict[str, Any] = {}
    where = _span_where(session_id, span, params)
    kind = "multiIf(event_type = 'page.view', 1, event_type = 'error', 3, 2)"
    where += f" AND event_type IN ({', '.join(repr(t) for t in TIMELINE_TYPES)})"
    inner = _first_deliveries(", ".join((*_TIMELINE_COLUMNS, "event_sequence", "received_at")), where)
    sql = f"SELECT {', '.join(_TIMELINE_COLUMNS)} FROM ({inner}) ORDER BY {_ORDER} LIMIT {TIMELINE_CAP + 1} BY {kind}"
    return SqlQuery(sql, params)


def timeline_from_events(rows: Sequence[Sequence[Any]], columns: tuple[str, ...]) -> Timeline:
    """The timeline of every event of a span, from its rows of :func:`events_query` (all of them, in order)."""
    at = [columns.index(c) for c in _TIMELINE_COLUMNS]
    kind = columns.index("event_type")
    return timeline([[r[i] for i in at] for r in rows if r[kind] in TIMELINE_TYPES])


def timeline(rows: Sequence[Sequence[Any]]) -> Timeline:
    """Rows of :func:`timeline_query`, already in replay order."""
    pages: list[PageTransition] = []
    calls: list[ApiCall] = []
    errors: list[ErrorEntry] = []
    previous: str | None = None
    for row in rows:
        v = dict(zip(_TIMELINE_COLUMNS, row, strict=True))
        at, eid, etype = _utc(v["timestamp"]), str(v["event_id"]), str(v["event_type"])
        if etype == "page.view":
            pages.append(PageTransition(previous, str(v["page_path"]), at, eid))
            previous = str(v["page_path"])
        elif etype == "error":
            errors.append(
                ErrorEntry(eid, at, str(v["error_message"]), str(v["error_type"]), str(v["error_component"]),
                           str(v["page_path"]))
            )  # fmt: skip
        else:
            status, duration = v["api_status_code"], v["api_duration_ms"]
            calls.append(
                ApiCall(eid, etype, at, str(v["api_method"]), str(v["api_path"]),
                        None if status is None else int(status), None if duration is None else float(duration))
            )  # fmt: skip
    truncated = max(len(pages), len(calls), len(errors)) > TIMELINE_CAP
    return Timeline(pages[:TIMELINE_CAP], calls[:TIMELINE_CAP], errors[:TIMELINE_CAP], truncated)
