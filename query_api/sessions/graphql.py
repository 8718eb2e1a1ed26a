"""The ``sessions`` (search) and ``sessionReplay`` GraphQL fields.  Thin: tenant from the token, then the
plain functions of :mod:`query_api.sessions.service`; row values are mapped to the types below.

Work runs only when selected: ``sessions { totalCount }`` runs the count query, and a replay's
``events`` and its timeline (``pageTransitions``, ``apiCalls``, ``errors``: one shared query) are
resolved on demand after the top-level field found the session.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import Enum
from urllib.parse import quote

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from query_api.context import QueryContext
from query_api.sessions import model, service, sql
from query_api.sessions.diff import PathChange
from query_api.tenant_scope import Tenant

__all__ = ["SessionQuery"]


@strawberry.enum(name="SessionPageMatch")
class PageMatch(Enum):
    EXACT = "exact"
    PREFIX = "prefix"


@strawberry.input(name="SessionFilter", description="Session search filters (AND).  See each field.")
class SessionFilterInput:
    user_id: str | None = strawberry.field(default=None, description="the segment's user id (last non-empty)")
    page: str | None = strawberry.field(default=None, description="a page.view of the segment at this path")
    page_match: PageMatch = strawberry.field(default=PageMatch.EXACT, description="how `page` matches a path")
    journey_id: str | None = None
    journey_status: str | None = strawberry.field(
        default=None, description="pending | converted | bounced | dropped | abandoned"
    )
    has_error: bool | None = strawberry.field(default=None, description="an error event in the segment (or none)")
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None
    date_from: datetime | None = strawberry.field(
        default=None, description="segments started at or after (default: dateTo - 7 days)"
    )
    date_to: datetime | None = strawberry.field(default=None, description="segments started before (default: now)")
    text: str | None = strawberry.field(
        default=None,
        description="case-insensitive substring of an event's ui.action, ui.component.name or event.name (<= 200)",
    )

    def to_model(self) -> model.SessionFilter:
        return model.SessionFilter(
            user_id=self.user_id,
            page=self.page,
            page_match="prefix" if self.page_match is PageMatch.PREFIX else "exact",
            journey_id=self.journey_id,
            journey_status=self.journey_status,
            has_error=self.has_error,
            min_duration_ms=self.min_duration_ms,
            max_duration_ms=self.max_duration_ms,
            date_from=self.date_from,
            date_to=self.date_to,
            text=self.text,
        )


@strawberry.type
class SessionPageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="One session segment (sessions FINAL).")
class SessionSegment:
    session_id: str
    segment: int
    started_at: datetime
    ended_at: datetime
    duration_ms: int = strawberry.field(description="last - first event, ms")
    entry_page: str
    exit_page: str
    page_views: int
    unique_pages: int
    event_count: int
    error_count: int
    user_id: str
    device: str
    browser: str
    os: str
    journey_id: str
    last_journey_step_id: str
    conversion_status: str
    replay_link: str = strawberry.field(
        description="path of this segment's replay; its arguments are projectId, sessionId and segment"
    )


def _segment(s: model.SegmentSummary, project_id: str) -> SessionSegment:
    return SessionSegment(
        session_id=s.session_id,
        segment=s.segment,
        started_at=s.started_at,
        ended_at=s.ended_at,
        duration_ms=s.duration_ms,
        entry_page=s.entry_page,
        exit_page=s.exit_page,
        page_views=s.page_views,
        unique_pages=s.unique_pages,
        event_count=s.event_count,
        error_count=s.error_count,
        user_id=s.user_id,
        device=s.device,
        browser=s.browser,
        os=s.os,
        journey_id=s.journey_id,
        last_journey_step_id=s.last_journey_step_id,
        conversion_status=s.conversion_status,
        replay_link=f"/projects/{project_id}/sessions/{quote(s.session_id, safe='')}/replay?segment={s.segment}",
    )


@strawberry.type
class SessionSearchResult:
    nodes: list[SessionSegment]
    page_info: SessionPageInfo
    _tenant: strawberry.Private[Tenant]
    _filter: strawberry.Private[model.ResolvedFilter]

    @strawberry.field(description="segments matching the filter over all pages (one more query)")
    async def total_count(self, info: Info[QueryContext, None]) -> int:
        return await service.count_sessions(info.context, self._tenant, self._filter)


@strawberry.type
class StateChange:
    path: str
    old_value: JSON | None = strawberry.field(description="null for an addition (or a null before)")
    new_value: JSON | None = strawberry.field(description="null for a removal (or a null after)")


@strawberry.type(description='ui.state.before -> ui.state.after, by JSON path (rule 13: `$.a.b[0]`, `$["a.b"]`)')
class StateDiff:
    key: str
    added: list[StateChange]
    removed: list[StateChange]
    changed: list[StateChange]
    truncated: bool = strawberry.field(description="a size bound cut the diff short")


def _changes(changes: list[PathChange]) -> list[StateChange]:
    return [StateChange(path=c.path, old_value=c.old, new_value=c.new) for c in changes]


@strawberry.type
class ReplayEvent:
    event_id: str
    event_type: str = strawberry.field(name="type")
    name: str
    page: str
    timestamp: datetime
    client_timestamp: datetime | None
    received_at: datetime
    sequence: int | None
    attributes: JSON = strawberry.field(description="every non-empty known field by its dotted name")
    metadata: JSON
    extra: JSON = strawberry.field(description="unknown keys of newer SDKs, as stored")
    state_diff: StateDiff | None = strawberry.field(description="state.change events only")


def _event(e: model.ReplayEvent) -> ReplayEvent:
    d = e.state_diff
    return ReplayEvent(
        event_id=e.event_id,
        event_type=e.event_type,
        name=e.name,
        page=e.page,
        timestamp=e.timestamp,
        client_timestamp=e.client_timestamp,
        received_at=e.received_at,
        sequence=e.sequence,
        attributes=JSON(e.attributes),
        metadata=JSON(e.metadata),
        extra=JSON(e.extra),
        state_diff=None
        if d is None
        else StateDiff(
            key=str(e.attributes.get("ui.state.key", "")),
            added=_changes(d.added),
            removed=_changes(d.removed),
            changed=_changes(d.changed),
            truncated=d.truncated,
        ),
    )


@strawberry.type
class ReplayEventPage:
    nodes: list[ReplayEvent]
    page_info: SessionPageInfo


@strawberry.type
class PageTransition:
    from_page: str | None = strawberry.field(name="from", description="null for the first page view")
    to_page: str = strawberry.field(name="to")
    at: datetime
    event_id: str


@strawberry.type
class ReplayApiCall:
    event_id: str
    event_type: str = strawberry.field(name="type", description="api.request or api.response")
    at: datetime
    method: str
    path: str
    status_code: int | None
    duration_ms: float | None


@strawberry.type
class ReplayError:
    event_id: str
    at: datetime
    message: str
    error_type: str = strawberry.field(name="type")
    component: str
    page: str


@strawberry.type(description="A session's (or one segment's) events in replay order, with its timeline.")
class SessionReplay:
    session_id: str
    segment: int | None
    segments: list[SessionSegment]
    _tenant: strawberry.Private[Tenant]
    _selection: strawberry.Private[service.ReplaySelection]
    _first: strawberry.Private[int]
    _after: strawberry.Private[str | None]
    _columns: strawberry.Private[tuple[str, ...]] = sql.EVENT_COLUMNS
    _wants_events: strawberry.Private[bool] = True
    # Started by the first field that needs it (or by ``sessionReplay`` itself), shared by the others.
    _page: strawberry.Private[asyncio.Future[tuple[model.ReplayPage, model.Timeline | None]] | None] = None
    _timeline: strawberry.Private[asyncio.Future[model.Timeline] | None] = None

    def _page_of(self, ctx: QueryContext) -> asyncio.Future[tuple[model.ReplayPage, model.Timeline | None]]:
        if self._page is None:
            self._page = asyncio.ensure_future(
                service.replay_page_and_timeline(
                    ctx, self._tenant, self._selection, self._first, self._after, self._columns
                )
            )
        return self._page

    @strawberry.field(description="events ordered by (timestamp, sequence, receive order), one page")
    async def events(self, info: Info[QueryContext, None]) -> ReplayEventPage:
        page, _ = await asyncio.shield(self._page_of(info.context))
        return ReplayEventPage(
            nodes=[_event(e) for e in page.events],
            page_info=SessionPageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    async def _read_timeline(self, ctx: QueryContext) -> model.Timeline:
        if self._wants_events:  # the events page gives the timeline when it holds the whole selection
            _, timeline = await asyncio.shield(self._page_of(ctx))
            if timeline is not None:
                return timeline
        return await service.replay_timeline(ctx, self._tenant, self._selection)

    def _timeline_started(self, ctx: QueryContext) -> asyncio.Future[model.Timeline]:
        if self._timeline is None:  # the three timeline fields share one read
            self._timeline = asyncio.ensure_future(self._read_timeline(ctx))
        return self._timeline

    async def _timeline_of(self, ctx: QueryContext) -> model.Timeline:
        return await asyncio.shield(self._timeline_started(ctx))

    @strawberry.field(description="each page.view: from the previous page view's path (at most 1000)")
    async def page_transitions(self, info: Info[QueryContext, None]) -> list[PageTransition]:
        t = await self._timeline_of(info.context)
        return [PageTransition(from_page=p.from_page, to_page=p.to_page, at=p.at, event_id=p.event_id)
                for p in t.page_transitions]  # fmt: skip

    @strawberry.field(description="api.request / api.response events (at most 1000)")
    async def api_calls(self, info: Info[QueryContext, None]) -> list[ReplayApiCall]:
        t = await self._timeline_of(info.context)
        return [
            ReplayApiCall(event_id=c.event_id, event_type=c.event_type, at=c.at, method=c.method, path=c.path,
                          status_code=c.status_code, duration_ms=c.duration_ms)
            for c in t.api_calls
        ]  # fmt: skip

    @strawberry.field(description="error events (at most 1000)")
    async def errors(self, info: Info[QueryContext, None]) -> list[ReplayError]:
        t = await self._timeline_of(info.context)
        return [
            ReplayError(event_id=e.event_id, at=e.at, message=e.message, error_type=e.error_type,
                        component=e.component, page=e.page)
            for e in t.errors
        ]  # fmt: skip

    @strawberry.field(description="true when a timeline list was cut at 1000 entries")
    async def timeline_truncated(self, info: Info[QueryContext, None]) -> bool:
        return (await self._timeline_of(info.context)).truncated


def _event_columns(replay_fields: list[Selection]) -> tuple[str, ...]:
    """The events columns a replay query needs: all, when any ``events.nodes`` selection asks for
    ``attributes``, ``metadata`` or ``extra`` or goes through a fragment (not looked into), else the narrow set."""
    for f in replay_fields:
        if not isinstance(f, SelectedField):
            return sql.EVENT_COLUMNS
        if f.name != "events":
            continue
        for page_field in f.selections:
            if not isinstance(page_field, SelectedField):
                return sql.EVENT_COLUMNS
            if page_field.name == "nodes" and any(
                not isinstance(n, SelectedField) or n.name in ("attributes", "metadata", "extra")
                for n in page_field.selections
            ):
                return sql.EVENT_COLUMNS
    return sql.NARROW_EVENT_COLUMNS


@strawberry.type
class SessionQuery:
    @strawberry.field(
        description="Search session segments, newest start first, cursor-paginated (first <= 200). Date range "
        "on the segment's start: default the last 7 days, at most 400 days."
    )
    async def sessions(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        filter: SessionFilterInput | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> SessionSearchResult:
        tenant = await info.context.tenant(str(project_id))
        flt = (filter or SessionFilterInput()).to_model()
        page = await service.search_sessions(info.context, tenant, flt, first, after)
        return SessionSearchResult(
            nodes=[_segment(s, tenant.project_id) for s in page.sessions],
            page_info=SessionPageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
            _tenant=tenant,
            _filter=page.resolved,
        )

    @strawberry.field(
        description="A session's replay: its segments (or the one asked for), events in order with state diffs "
        "(first <= 1000, cursor `after`), page transitions, API calls and errors."
    )
    async def session_replay(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        session_id: str,
        segment: int | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> SessionReplay:
        tenant = await info.context.tenant(str(project_id))
        service.check_replay_page(first, after, session_id, segment)
        ctx = info.context
        fields = info.selected_fields[0].selections
        columns = _event_columns(fields)
        selected = {f.name if isinstance(f, SelectedField) else "*" for f in fields}
        if "*" in selected:  # fragments: assume everything is selected
            selected |= {"events", "pageTransitions"}
        wants_events = "events" in selected
        replay = SessionReplay(
            session_id=session_id, segment=segment, segments=[], _tenant=tenant,
            _selection=service.ReplaySelection(session_id, None, []), _first=first, _after=after,
            _columns=columns, _wants_events=wants_events,
        )  # fmt: skip
        if segment is None:
            # The whole session: events and timeline do not depend on the segments, so the reads the query
            # selects start now, next to the segments' read (one round trip instead of two in a row).
            if wants_events:
                replay._page_of(ctx)
            elif selected & {"pageTransitions", "apiCalls", "errors", "timelineTruncated"}:
                replay._timeline_started(ctx)
        try:
            sel = await service.select_replay(ctx, tenant, session_id, segment)
        except BaseException:
            for f in (replay._page, replay._timeline):
                if f is not None:
                    f.cancel()
            raise
        replay.segments = [_segment(s, tenant.project_id) for s in sel.segments]
        replay._selection = sel  # the same span as the whole-session reads started above (None)
        return replay
