"""What session search asks and what search and replay answer (pure, typed values; no I/O).

:class:`SessionFilter` is the question of a search, checked by :meth:`SessionFilter.resolve` against a
given ``now`` into a :class:`ResolvedFilter` whose date range is concrete and bounded.  The answers are
frozen dataclasses shared by the GraphQL types and the MCP tools (:mod:`query_api.sessions.service`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from query_api.errors import InvalidInput
from query_api.sessions.diff import StateDiff

__all__ = [
    "DEFAULT_RANGE",
    "JOURNEY_STATUSES",
    "MAX_RANGE",
    "MAX_TEXT_CHARS",
    "ApiCall",
    "ErrorEntry",
    "PageTransition",
    "ReplayEvent",
    "ReplayPage",
    "ResolvedFilter",
    "SearchPage",
    "SegmentSummary",
    "SessionFilter",
    "Timeline",
]

DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=400)
MAX_TEXT_CHARS = 200
MAX_PAGE_CHARS = 1024  # page.path's own limit
MAX_ID_CHARS = 255
JOURNEY_STATUSES = frozenset({"pending", "converted", "bounced", "dropped", "abandoned"})
PageMatch = Literal["exact", "prefix"]


@dataclass(frozen=True, slots=True)
class ResolvedFilter:
    """A validated filter with a concrete ``[date_from, date_to)`` range on the segment's start."""

    date_from: datetime
    date_to: datetime
    user_id: str | None = None
    page: str | None = None
    page_match: PageMatch = "exact"
    journey_id: str | None = None
    journey_status: str | None = None
    has_error: bool | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Search filters; every one is optional and they combine with AND.

    ``page``: a ``page.view`` of the segment at that path (``page_match`` exact or prefix).  ``text``: a
    case-insensitive substring of ``ui.action``, ``ui.component.name`` or ``event.name`` of any event of
    the segment.  ``journey_id`` / ``journey_status``: the segment's journey columns.  ``has_error``: an
    ``error`` event in the segment (or none).  Durations in ms, inclusive.  The date range selects
    segments by their start, ``[date_from, date_to)``; default the last 7 days, at most 400 days.
    """

    user_id: str | None = None
    page: str | None = None
    page_match: PageMatch = "exact"
    journey_id: str | None = None
    journey_status: str | None = None
    has_error: bool | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    text: str | None = None

    def resolve(self, now: datetime) -> ResolvedFilter:
        """Check every field and fix the date range; raises :class:`InvalidInput` naming the field."""
        date_to = self.date_to or now
        date_from = self.date_from or date_to - DEFAULT_RANGE
        if date_from.tzinfo is None or date_to.tzinfo is None:
            raise InvalidInput("dateFrom/dateTo: must carry a time zone")
        if date_from >= date_to:
            raise InvalidInput("dateFrom: must be before dateTo")
        if date_to - date_from > MAX_RANGE:
            raise InvalidInput(f"dateFrom/dateTo: range longer than {MAX_RANGE.days} days")
        _bounded("userId", self.user_id, MAX_ID_CHARS)
        _bounded("journeyId", self.journey_id, MAX_ID_CHARS)
        _bounded("page", self.page, MAX_PAGE_CHARS)
        _bounded("text", self.text, MAX_TEXT_CHARS)
        if self.page_match not in ("exact", "prefix"):
            raise InvalidInput("pageMatch: must be exact or prefix")
        if self.journey_status is not None and self.journey_status not in JOURNEY_STATUSES:
            raise InvalidInput(f"journeyStatus: must be one of {', '.join(sorted(JOURNEY_STATUSES))}")
        for name, value in (("minDurationMs", self.min_duration_ms), ("maxDurationMs", self.max_duration_ms)):
            if value is not None and not 0 <= value < 2**62:
                raise InvalidInput(f"{name}: must be a non-negative number of milliseconds")
        if (
            self.min_duration_ms is not None
            and self.max_duration_ms is not None
            and self.min_duration_ms > self.max_duration_ms
        ):
            raise InvalidInput("minDurationMs: must not exceed maxDurationMs")
        return ResolvedFilter(
            date_from=date_from,
            date_to=date_to,
            user_id=self.user_id,
            page=self.page,
            page_match=self.page_match,
            journey_id=self.journey_id,
            journey_status=self.journey_status,
            has_error=self.has_error,
            min_duration_ms=self.min_duration_ms,
            max_duration_ms=self.max_duration_ms,
            text=self.text,
        )


def _bounded(name: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    if not value:
        raise InvalidInput(f"{name}: must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{name}: longer than {limit} characters")
    if "\x00" in value:
        raise InvalidInput(f"{name}: must not contain NUL")


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    """One session segment as the sessionizer stored it (``sessions FINAL``, precise rule 3)."""

    session_id: str
    segment: int
    started_at: datetime
    ended_at: datetime
    duration_ms: int
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


@dataclass(frozen=True, slots=True)
class SearchPage:
    sessions: list[SegmentSummary]
    has_next_page: bool
    end_cursor: str | None
    resolved: ResolvedFilter  # the filter as applied (concrete date range)
    total_count: int | None = None


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    """One stored event.  ``attributes``: every non-empty known field by its dotted name (``api.path``,
    ``ui.state.before``, ...); ``metadata`` and ``extra`` as stored (string values)."""

    event_id: str
    event_type: str
    name: str
    page: str
    timestamp: datetime
    client_timestamp: datetime | None
    received_at: datetime
    sequence: int | None
    attributes: dict[str, Any]
    metadata: dict[str, str]
    extra: dict[str, str]
    state_diff: StateDiff | None = None  # state.change events only


@dataclass(frozen=True, slots=True)
class ReplayPage:
    events: list[ReplayEvent]
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True, slots=True)
class PageTransition:
    """A ``page.view``: from the previous ``page.view``'s path (None for the first) to this one."""

    from_page: str | None
    to_page: str
    at: datetime
    event_id: str


@dataclass(frozen=True, slots=True)
class ApiCall:
    event_id: str
    event_type: str
    at: datetime
    method: str
    path: str
    status_code: int | None
    duration_ms: float | None


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    event_id: str
    at: datetime
    message: str
    error_type: str
    component: str
    page: str


@dataclass(frozen=True, slots=True)
class Timeline:
    """Page transitions, API calls and errors of the replayed span, in replay order, each list capped."""

    page_transitions: list[PageTransition] = field(default_factory=list)
    api_calls: list[ApiCall] = field(default_factory=list)
    errors: list[ErrorEntry] = field(default_factory=list)
    truncated: bool = False
