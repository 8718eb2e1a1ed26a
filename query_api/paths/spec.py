"""What a top-paths question is (pure).

Unit: the session segment (rule 2).  In each segment, the first event matching ``step`` that happens in
``[dateFrom, dateTo)`` anchors a path: the next ``depth`` nodes after it (``AFTER``) or the ``depth`` nodes
before it, oldest first (``BEFORE``), within the same segment.  A node is a ``page.view`` with a page path
(``PAGE``) or any event with an ``event.name`` (``EVENT``), labelled by that path or name.

Decisions where the issue is silent:
- repeated nodes are kept (``/a → /a`` is a reload, it is what happened); a segment with fewer nodes gives a
  shorter path, and one with none the empty path ``[]``; every anchored segment counts once;
- the scan is ``[dateFrom, dateTo + 24 h)`` so a path after a late anchor is complete (a segment lasts at
  most 24 h); segments are computed over the scanned events (as the funnels do), with the default session
  timeout of 30 minutes;
- default range: the last 7 days; at most 400 days; ``depth`` 1..5 (default 3); ``limit`` 1..100 (10).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from query_api.cohorts.bounds import check_int, check_range, parse_time
from query_api.cohorts.persons import ANY
from query_api.errors import InvalidInput
from query_api.funnels.events import SEGMENT_MAX_MS
from query_api.funnels.spec import DEFAULT_SESSION_TIMEOUT_MS, Breakdown, FunnelSpec, FunnelStep
from schemas.matchers import Matcher, MatcherError, parse_matcher

__all__ = ["Direction", "NodeKind", "PathsSpec", "parse_paths_spec"]

Direction = Literal["AFTER", "BEFORE"]
NodeKind = Literal["PAGE", "EVENT"]
MAX_DEPTH = 5
MAX_LIMIT = 100
DEFAULT_RANGE = timedelta(days=7)
NO_LABEL = "(none)"  # the funnels' empty breakdown value: such events are not nodes
_NODES: dict[str, tuple[Matcher, str]] = {
    "PAGE": (Matcher(event_type="page.view"), "page_path"),
    "EVENT": (ANY, "event_name"),
}


@dataclass(frozen=True, slots=True)
class PathsSpec:
    step: Matcher
    date_from: datetime
    date_to: datetime
    direction: Direction = "AFTER"
    depth: int = 3
    limit: int = 10
    node: NodeKind = "PAGE"
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS

    @property
    def scan_to(self) -> datetime:
        return self.date_to + timedelta(milliseconds=SEGMENT_MAX_MS)

    @property
    def node_matcher(self) -> Matcher:
        return _NODES[self.node][0]

    @property
    def label_column(self) -> str:
        return _NODES[self.node][1]

    def funnel_spec(self) -> FunnelSpec:
        """The same scan as a funnel over (anchor, node) counted by sessions: its events, segments and
        breakdown value (the node label) are exactly what paths need."""
        return FunnelSpec(
            steps=(FunnelStep(self.step), FunnelStep(self.node_matcher)),
            date_from=self.date_from,
            date_to=self.date_to,
            window_ms=SEGMENT_MAX_MS,
            count_by="sessions",
            breakdown=Breakdown(self.label_column),
            session_timeout_ms=self.session_timeout_ms,
        )


def parse_paths_spec(
    *,
    step: object,
    direction: str = "AFTER",
    depth: int = 3,
    limit: int = 10,
    node: str = "PAGE",
    date_from: object = None,
    date_to: object = None,
    now: datetime,
) -> PathsSpec:
    try:
        matcher = parse_matcher(step)
    except MatcherError as exc:
        raise InvalidInput(f"step.{exc}") from None
    if direction not in ("AFTER", "BEFORE"):
        raise InvalidInput("direction: must be AFTER or BEFORE")
    if node not in _NODES:
        raise InvalidInput("node: must be PAGE or EVENT")
    end = parse_time("dateTo", date_to) or now
    start = parse_time("dateFrom", date_from) or end - DEFAULT_RANGE
    check_range(start, end)
    return PathsSpec(
        step=matcher,
        date_from=start,
        date_to=end,
        direction="AFTER" if direction == "AFTER" else "BEFORE",
        depth=check_int("depth", depth, 1, MAX_DEPTH),
        limit=check_int("limit", limit, 1, MAX_LIMIT),
        node="PAGE" if node == "PAGE" else "EVENT",
    )
