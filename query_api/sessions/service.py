"""Session search and replay as plain async functions, shared by the GraphQL fields and the MCP tools.

Each function takes a :class:`Reader` (``QueryContext`` is one: its ``query`` is the tenant-scoped
ClickHouse read) and a :class:`~query_api.tenant_scope.Tenant` the caller already resolved from the
token, builds SQL with :mod:`query_api.sessions.sql` and maps rows to :mod:`query_api.sessions.model`
values.  Nothing here holds state between calls.

Replay is split so GraphQL runs only what a request selects: :func:`select_replay` (the session's
segments; raises :class:`NotFound`, worded the same whether the session exists in another project or
not at all), then :func:`replay_page_and_timeline` (one page, and the timeline when the page holds every
event) and :func:`replay_timeline` (transitions, API calls, errors).  :func:`session_replay` does all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from clickhouse_connect.driver.query import QueryResult

from query_api.errors import InvalidInput, NotFound
from query_api.sessions import sql
from query_api.sessions.cursor import EventCursor, decode_event_cursor, decode_session_cursor
from query_api.sessions.model import (
    MAX_ID_CHARS,
    ReplayPage,
    ResolvedFilter,
    SearchPage,
    SegmentSummary,
    SessionFilter,
    Timeline,
)
from query_api.tenant_scope import Tenant

__all__ = [
    "MAX_REPLAY_PAGE",
    "MAX_SEARCH_PAGE",
    "Reader",
    "ReplaySelection",
    "SessionReplay",
    "check_replay_page",
    "count_sessions",
    "replay_page_and_timeline",
    "replay_timeline",
    "search_sessions",
    "select_replay",
    "session_replay",
]

MAX_SEARCH_PAGE = 200
MAX_REPLAY_PAGE = 1000


class Reader(Protocol):
    """A tenant-scoped ClickHouse reader (``QueryContext.query``)."""

    async def query(
        self,
        tenant: Tenant,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult: ...


def _page_size(name: str, value: int, maximum: int) -> int:
    if not 1 <= value <= maximum:
        raise InvalidInput(f"{name}: must be between 1 and {maximum}")
    return value


async def _rows(reader: Reader, tenant: Tenant, q: sql.SqlQuery) -> list[Any]:
    result = await reader.query(tenant, q.sql, q.params)
    return list(result.result_rows)


# --- search ---------------------------------------------------------------------------------------------


async def search_sessions(
    reader: Reader,
    tenant: Tenant,
    flt: SessionFilter | None = None,
    first: int = 50,
    after: str | None = None,
    *,
    with_total: bool = False,
    now: datetime | None = None,
) -> SearchPage:
    """One page of the project's session segments matching ``flt``, newest start first."""
    resolved = (flt or SessionFilter()).resolve(now or datetime.now(UTC))
    size = _page_size("first", first, MAX_SEARCH_PAGE)
    cursor = None if after is None else decode_session_cursor(after)
    rows = await _rows(reader, tenant, sql.search_query(resolved, cursor, size + 1))
    found = [sql.summary(r) for r in rows[:size]]
    total = await count_sessions(reader, tenant, resolved) if with_total else None
    end = sql.session_cursor(found[-1]) if found else None
    return SearchPage(found, len(rows) > size, end, resolved, total)


async def count_sessions(reader: Reader, tenant: Tenant, resolved: ResolvedFilter) -> int:
    """How many segments match (all pages)."""
    rows = await _rows(reader, tenant, sql.count_query(resolved))
    return int(rows[0][0])


# --- replay ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplaySelection:
    """What a replay covers: one segment (its stored span) or, with ``segment`` None, the whole session."""

    session_id: str
    segment: int | None
    segments: list[SegmentSummary]

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        if self.segment is None:
            return None  # every stored event of the session, also those the sessionizer has not seen yet
        s = self.segments[0]
        return s.started_at, s.ended_at


@dataclass(frozen=True, slots=True)
class SessionReplay:
    selection: ReplaySelection
    page: ReplayPage
    timeline: Timeline


def _usable_id(value: str) -> bool:
    if not value or len(value) > MAX_ID_CHARS or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


async def select_replay(reader: Reader, tenant: Tenant, session_id: str, segment: int | None) -> ReplaySelection:
    """The session (or one segment) of the tenant's project, else :class:`NotFound`."""
    if segment is not None and not 1 <= segment < 2**32:
        raise InvalidInput("segment: must be a positive segment number")
    not_found = NotFound(f"session {session_id!r} not found")
    if not _usable_id(session_id):
        raise not_found
    segments = [sql.summary(r) for r in await _rows(reader, tenant, sql.segments_query(session_id, segment))]
    if not segments and (segment is not None or not await _rows(reader, tenant, sql.exists_query(session_id))):
        raise not_found
    return ReplaySelection(session_id, segment, segments)


def check_replay_page(first: int, after: str | None, session_id: str, segment: int | None) -> EventCursor | None:
    """The page arguments of a replay, checked before any read (:class:`InvalidInput` naming the argument)."""
    _page_size("first", first, MAX_REPLAY_PAGE)
    return None if after is None else decode_event_cursor(after, session_id, segment)


async def replay_page_and_timeline(
    reader: Reader,
    tenant: Tenant,
    sel: ReplaySelection,
    first: int = 100,
    after: str | None = None,
    columns: tuple[str, ...] = sql.EVENT_COLUMNS,
) -> tuple[ReplayPage, Timeline | None]:
    """One page, and the timeline when that first page holds every event of the selection (most sessions):
    one query instead of two.  None: read it with :func:`replay_timeline`.  ``columns``:
    :data:`sql.NARROW_EVENT_COLUMNS` when no attributes/metadata/extra are wanted."""
    cursor = check_replay_page(first, after, sel.session_id, sel.segment)
    size = first
    rows = await _rows(reader, tenant, sql.events_query(sel.session_id, sel.span, cursor, size + 1, columns))
    events = [sql.replay_event(r, columns) for r in rows[:size]]
    end = sql.event_cursor(events[-1], sel.session_id, sel.segment) if events else None
    whole = cursor is None and len(rows) <= size
    return ReplayPage(events, len(rows) > size, end), sql.timeline_from_events(rows, columns) if whole else None


async def replay_timeline(reader: Reader, tenant: Tenant, sel: ReplaySelection) -> Timeline:
    return sql.timeline(await _rows(reader, tenant, sql.timeline_query(sel.session_id, sel.span)))


async def session_replay(
    reader: Reader,
    tenant: Tenant,
    session_id: str,
    segment: int | None = None,
    first: int = 100,
    after: str | None = None,
) -> SessionReplay:
    """Everything of a replay at once (the MCP tool's answer); GraphQL runs the parts it is asked for."""
    check_replay_page(first, after, session_id, segment)
    sel = await select_replay(reader, tenant, session_id, segment)
    page, timeline = await replay_page_and_timeline(reader, tenant, sel, first, after)
    return SessionReplay(sel, page, timeline or await replay_timeline(reader, tenant, sel))
