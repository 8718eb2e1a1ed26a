"""Sessionization of one ``session.id``: its events → numbered segments and their attributes.  Pure: no I/O,
the clock passed in.  The semantics are ../shared/design/analytics-semantics.md ("Sessions", precise rules 1-3):

* Order: (timestamp, ``event.sequence`` (missing = 0), receive order = (received_ms, partition offset)),
  then the event id, so that the result never depends on the order events are handed in.
* A segment ends where the gap to the next event is strictly greater than the timeout, or before the
  first event more than 24 h after the segment's first event.  Segments are numbered from 1.
* Attributes are recomputed from the segment's events whenever the segment changes: a late or
  out-of-order event lands where it belongs (it may join two segments, which renumbers the later ones),
  and an event id seen before changes nothing (the first delivery counts).  The one exception is exact by
  construction: events that all come after the newest segment's last event and stay in it extend its
  :class:`SegmentTally` (:func:`extend_tail`), the same fold :func:`summarize` runs over all its events.

State and its bound.  :func:`advance` takes the session's :class:`Ledger` and the stored events of its
*live* segments, and returns what to store and which segments to (re)write.  A segment is **sealed** (its
events dropped from the state, its last row final) once it is closed and its last event lies more than
``late_horizon_ms`` before the session's newest event, so a session id that stays busy for weeks keeps at
most about a horizon plus a day of events.  An event that would change a sealed segment (at or before the
last sealed event + timeout, and before the first live event) is **not applied**: it is counted in the
warehouse only, as the semantics allow for "events older than the retention of the live state".

Sealing is decided event by event in arrival (Kafka) order, not per batch, so the result does not depend
on where batches were cut: a replay after a crash ends in the same rows as a clean run.  A redelivered
event of a sealed segment is recognised by its time (it is refused like any event into a sealed segment),
not by its id, which is gone with the segment's events.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from schemas.sessions import LiveEvent, SessionSummary

__all__ = [
    "DAY_MS",
    "MINUTE_MS",
    "ArchivedSegment",
    "Ledger",
    "SegmentTally",
    "SessionPolicy",
    "SessionUpdate",
    "Tail",
    "advance",
    "extend_tail",
    "is_open",
    "ledger_from_archive",
    "sessionize",
    "split_segments",
    "summarize",
]

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How a project cuts sessions.  ``timeout_ms`` is the project's ``session_timeout_minutes``."""

    timeout_ms: int = 30 * MINUTE_MS
    max_length_ms: int = DAY_MS
    late_horizon_ms: int = DAY_MS


# Ledger, Tail and SessionUpdate (and the per-session records of the store and the sink that refer here) are
# treated as immutable (changed with dataclasses.replace) but not frozen: several are built per session per
# flush, and a frozen dataclass costs 2-5 times as much to build (an object.__setattr__ call per field), as
# with schemas.sessions.LiveEvent.
@dataclass(slots=True)
class Ledger:
    """Bookkeeping of one session id beside its live events.

    ``segments`` counts every segment written so far (sealed + live), so that a merge can hide the numbers
    that vanished.  ``sealed`` segments come before the live ones; ``sealed_end_ms`` is the last sealed event
    and ``frontier_ms`` the first live event when the last seal happened (None: nothing live was kept, e.g.
    the state expired and was rebuilt from the warehouse).  ``version`` of the last rows written.
    """

    segments: int = 0
    sealed: int = 0
    sealed_end_ms: int | None = None
    frontier_ms: int | None = None
    version: int = 0

    def admits(self, e: LiveEvent, policy: SessionPolicy) -> bool:
        """False for an event that would change a sealed segment (see the module docstring)."""
        if self.sealed_end_ms is None:
            return True
        if self.frontier_ms is not None and e.ts_ms >= self.frontier_ms:
            return True
        return e.ts_ms > self.sealed_end_ms + policy.timeout_ms


@dataclass(frozen=True, slots=True)
class ArchivedSegment:
    """A segment row the warehouse shows (``sessions FINAL``): number, last event, version."""

    segment: int
    ended_ms: int
    version: int


def ledger_from_archive(archived: Sequence[ArchivedSegment], written_before: int) -> Ledger:
    """The ledger of a session id without live state, from its warehouse rows: all of them sealed.

    Rows are written before the live state is saved, so rows with a version (a clock) at or after
    ``written_before`` (now - the live state's TTL) come from a flush whose state was never saved (the
    process died in between): the records behind them were not committed and are being replayed, so
    those segments are recomputed, not sealed.  Older rows belong to a live state that expired.
    """
    old = [a for a in archived if a.version < written_before]
    version = max((a.version for a in archived), default=0)
    if not old:
        return Ledger(version=version)
    newest = max(old, key=lambda a: a.segment)
    return Ledger(newest.segment, newest.segment, newest.ended_ms, None, version)


@dataclass(slots=True)  # immutable by convention, see Ledger
class Tail:
    """The newest live segment of a session as an update left it: what :func:`extend_tail` needs to apply
    later arrivals that all come after its last event, without the session's stored events.  Valid for
    the ledger version of that update only (the caller keeps it beside the events of that version)."""

    policy: SessionPolicy
    live_segments: int  # live segments of the session, this one included (the last)
    seal_check_ms: int | None  # newest event time above which a closed live segment becomes sealable
    tally: SegmentTally  # of this segment; never changed (extend_tail folds into a copy)
    last_order: tuple[int, int, int, int, str]  # LiveEvent.order of its last event
    last_event_type: str


@dataclass(slots=True)  # immutable by convention, see Ledger
class SessionUpdate:
    """What :func:`advance` decided for one session id."""

    ledger: Ledger
    added: tuple[LiveEvent, ...]  # new live events, to store
    dropped: frozenset[str]  # stored event ids to delete (their segment was sealed)
    summaries: tuple[SessionSummary, ...]  # rows to write: segments sealed now, then live ones that changed
    removed_segments: tuple[int, ...]  # numbers that vanished (merged), to hide
    live: SessionSummary | None  # the newest segment; None when the session has no live events
    last_event_type: str = ""  # of the newest live event
    not_applied: int = 0  # events older than the live state (warehouse only)
    duplicates: int = 0
    # The ordered events of each of ``summaries``; empty for an update of extend_tail, whose caller extends
    # the journeys of the tail instead of recomputing them.
    segment_events: tuple[Sequence[LiveEvent], ...] = ()
    applied: tuple[LiveEvent, ...] = ()  # arrivals applied now (not duplicates, not refused), sealed or not
    sealed_now: int = 0  # the first ``sealed_now`` summaries are segments sealed now (final)
    tail: Tail | None = None  # the newest live segment when it changed (see :func:`extend_tail`)

    @property
    def changed(self) -> bool:
        """Something to write (an event applied, or a segment sealed by one that was applied and sealed)."""
        return bool(self.summaries)


def split_segments(ordered: Sequence[LiveEvent], policy: SessionPolicy) -> list[list[LiveEvent]]:
    """Segments of events already in :attr:`LiveEvent.order` (rule 2)."""
    segments: list[list[LiveEvent]] = []
    current: list[LiveEvent] = []
    start = last = 0
    for e in ordered:
        if current and (e.ts_ms - last > policy.timeout_ms or e.ts_ms - start > policy.max_length_ms):
            segments.append(current)
            current = []
        if not current:
            start = e.ts_ms
        current.append(e)
        last = e.ts_ms
    if current:
        segments.append(current)
    return segments


def summarize(number: int, events: Sequence[LiveEvent]) -> SessionSummary:
    """Attributes of one segment, its events in order (rule 3).

    Pages come from ``page.view`` events: ``page_views`` counts them, ``entry_page``/``exit_page`` are the
    first and last path among them and ``unique_pages`` the distinct non-empty paths.  ``error_count``
    counts ``error`` events; ``user_id`` is the last non-empty one; device, browser and OS the first given.
    """
    return SegmentTally(number).extend(events).summary()


@dataclass(slots=True)
class SegmentTally:
    """The running attributes of one segment (what :func:`summarize` folds over its events in order), so that
    a segment can be extended by later events without its earlier ones: folding ``a`` then ``b`` is
    folding ``a + b``, because every attribute is a count, a set, a first or a last."""

    number: int
    started_ms: int = 0
    ended_ms: int = 0
    event_count: int = 0
    page_views: int = 0
    pages: set[str] = field(default_factory=set)
    error_count: int = 0
    entry_page: str = ""
    exit_page: str = ""
    user_id: str = ""
    device: str = ""
    browser: str = ""
    os: str = ""

    def extend(self, events: Sequence[LiveEvent]) -> SegmentTally:
        """Fold ``events`` (in order, all after the ones folded so far) into this tally; returns it."""
        if not events:
            return self
        page_views, errors, pages = self.page_views, self.error_count, self.pages
        entry, exit_, user = self.entry_page, self.exit_page, self.user_id
        device, browser, os_ = self.device, self.browser, self.os
        for e in events:
            if e.event_type == "page.view":
                page_views += 1
                if e.page:
                    pages.add(e.page)
                    entry = entry or e.page
                    exit_ = e.page
            elif e.event_type == "error":
                errors += 1
            user = e.user_id or user
            device = device or e.device
            browser = browser or e.browser
            os_ = os_ or e.os
        if not self.event_count:
            self.started_ms = events[0].ts_ms
        self.ended_ms = events[-1].ts_ms
        self.event_count += len(events)
        self.page_views, self.error_count = page_views, errors
        self.entry_page, self.exit_page, self.user_id = entry, exit_, user
        self.device, self.browser, self.os = device, browser, os_
        return self

    def copy(self) -> SegmentTally:
        return SegmentTally(self.number, self.started_ms, self.ended_ms, self.event_count, self.page_views,
                            set(self.pages), self.error_count, self.entry_page, self.exit_page, self.user_id,
                            self.device, self.browser, self.os)  # fmt: skip

    def summary(self) -> SessionSummary:
        return SessionSummary(
            segment=self.number,
            started_ms=self.started_ms,
            ended_ms=self.ended_ms,
            event_count=self.event_count,
            page_views=self.page_views,
            unique_pages=len(self.pages),
            error_count=self.error_count,
            entry_page=self.entry_page,
            exit_page=self.exit_page,
            user_id=self.user_id,
            device=self.device,
            browser=self.browser,
            os=self.os,
        )


def sessionize(events: Iterable[LiveEvent], policy: SessionPolicy) -> list[SessionSummary]:
    """Every segment of a complete event set, from scratch (first delivery of each id counts): the
    reference that :func:`advance` must agree with while nothing is sealed."""
    unique: dict[str, LiveEvent] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    ordered = sorted(unique.values(), key=_order)
    return [summarize(i + 1, seg) for i, seg in enumerate(split_segments(ordered, policy))]


def is_open(summary: SessionSummary, newest: bool, policy: SessionPolicy, now_ms: int) -> bool:
    """Rule 2: a segment is open while no later segment exists and now - last event <= timeout."""
    return newest and now_ms - summary.ended_ms <= policy.timeout_ms


_order = operator.attrgetter("order")


@dataclass
class _Live:
    """The live events of one session while :func:`advance` applies arrivals (kept in order), with a cheap
    test for "could a segment be sealable now" so that re-segmentation happens only when it might be."""

    policy: SessionPolicy
    events: dict[str, LiveEvent]
    ordered: list[LiveEvent] = field(default_factory=list)
    segments: list[list[LiveEvent]] = field(default_factory=list)
    tail_start: int | None = None  # first event of the newest segment at the last segmentation
    max_ts: int | None = None
    check_at: int | None = None  # no segment can be sealable while max_ts <= check_at
    stale: bool = True  # segments no longer reflect events

    def __post_init__(self) -> None:
        # Without segmenting yet: the newest event bounds the tail's start from above (so an event before
        # it forces a look) and the oldest bounds every closed segment's end from below.
        self.ordered = sorted(self.events.values(), key=_order)
        if self.ordered:
            self.tail_start = self.max_ts = self.ordered[-1].ts_ms
            self.check_at = self.ordered[0].ts_ms + self.policy.late_horizon_ms

    def resegment(self) -> None:
        self.segments = split_segments(self.ordered, self.policy)
        self.stale = False
        if not self.segments:
            self.tail_start = self.max_ts = self.check_at = None
            return
        self.tail_start = self.segments[-1][0].ts_ms
        self.max_ts = self.segments[-1][-1].ts_ms  # events are in order, which starts with the time
        # Closed segments end before the tail starts, and later appends only close segments that end at or
        # after it: a lower bound of (earliest closed end) + horizon, without keeping track of every append.
        earliest_end = self.segments[0][-1].ts_ms if len(self.segments) > 1 else self.tail_start
        self.check_at = earliest_end + self.policy.late_horizon_ms

    def add(self, e: LiveEvent) -> bool:
        """Add ``e``; True when a seal may be due (the caller re-segments then)."""
        self.events[e.event_id] = e
        if self.ordered and e.order < self.ordered[-1].order:
            bisect.insort(self.ordered, e, key=_order)
        else:
            self.ordered.append(e)
        self.stale = True
        before_tail = self.tail_start is None or e.ts_ms < self.tail_start
        self.max_ts = e.ts_ms if self.max_ts is None else max(self.max_ts, e.ts_ms)
        return before_tail or (self.check_at is not None and self.max_ts > self.check_at)

    def sealable(self) -> int:
        """How many leading segments are closed and end more than the horizon before the newest event."""
        assert self.max_ts is not None
        limit = self.max_ts - self.policy.late_horizon_ms
        n = 0
        while n < len(self.segments) - 1 and self.segments[n][-1].ts_ms < limit:
            n += 1
        return n


def advance(
    ledger: Ledger,
    stored: Mapping[str, LiveEvent],
    arrivals: Sequence[LiveEvent],
    policy: SessionPolicy,
    version_floor: int = 0,
) -> SessionUpdate:
    """Apply ``arrivals`` (in arrival order) to a session whose live events are ``stored``.

    The new ledger's version is above both the old one and ``version_floor`` (a clock), so rows written
    now replace every row written before for this session.
    """
    live = _Live(policy, dict(stored))
    if live.max_ts is not None and live.check_at is not None and live.max_ts > live.check_at:
        live.resegment()
    added: dict[str, LiveEvent] = {}
    dropped: set[str] = set()
    sealed_now: list[SessionSummary] = []
    sealed_events: list[Sequence[LiveEvent]] = []
    applied: list[LiveEvent] = []
    not_applied = duplicates = 0
    earliest: tuple[int, int, int, int, str] | None = None
    known = live.events
    for e in arrivals:
        if e.event_id in known:
            duplicates += 1
            continue
        if ledger.sealed_end_ms is not None and not ledger.admits(e, policy):
            not_applied += 1
            continue
        added[e.event_id] = e
        applied.append(e)
        if earliest is None or e.order < earliest:
            earliest = e.order
        if not live.add(e):
            continue
        live.resegment()
        n = live.sealable()
        if not n:
            continue
        for i, segment in enumerate(live.segments[:n]):
            sealed_now.append(summarize(ledger.sealed + i + 1, segment))
            sealed_events.append(segment)
            for s in segment:
                del live.events[s.event_id]
                if added.pop(s.event_id, None) is None:
                    dropped.add(s.event_id)
        live.ordered = [e for seg in live.segments[n:] for e in seg]
        ledger = replace(
            ledger,
            sealed=ledger.sealed + n,
            sealed_end_ms=live.segments[n - 1][-1].ts_ms,
            frontier_ms=live.segments[n][0].ts_ms,
        )
        live.resegment()
    if live.stale:
        live.resegment()
    segments = live.segments
    # Segments that end before the earliest applied event keep their events and their numbers: no new row.
    first = len(segments)
    if earliest is not None:
        first = next((i for i, seg in enumerate(segments) if seg[-1].order >= earliest), len(segments))
    summaries = [summarize(ledger.sealed + i + 1, segments[i]) for i in range(first, len(segments) - 1)]
    tally = None
    if first < len(segments):
        tally = SegmentTally(ledger.sealed + len(segments)).extend(segments[-1])
        summaries.append(tally.summary())
    newest = (
        summaries[-1] if summaries else summarize(ledger.sealed + len(segments), segments[-1]) if segments else None
    )
    total = ledger.sealed + len(segments)
    changed = bool(added or dropped or sealed_now)
    written = ledger.segments  # before this update
    tail = None
    if changed:
        version = max(ledger.version + 1, version_floor)
        ledger = Ledger(total, ledger.sealed, ledger.sealed_end_ms, ledger.frontier_ms, version)
        if tally is not None:
            seal_check = segments[0][-1].ts_ms + policy.late_horizon_ms if len(segments) > 1 else None
            last = segments[-1][-1]
            tail = Tail(policy, len(segments), seal_check, tally, last.order, last.event_type)
    return SessionUpdate(
        ledger=ledger,
        added=tuple(added.values()),
        dropped=frozenset(dropped),
        summaries=(*sealed_now, *summaries) if changed else (),
        removed_segments=tuple(range(total + 1, written + 1)) if changed else (),
        live=newest,
        last_event_type=segments[-1][-1].event_type if segments else "",
        not_applied=not_applied,
        duplicates=duplicates,
        segment_events=(*sealed_events, *segments[first:]) if changed else (),
        applied=tuple(applied),
        sealed_now=len(sealed_now) if changed else 0,
        tail=tail,
    )


def extend_tail(
    tail: Tail | None,
    ledger: Ledger,
    known: Container[str],
    arrivals: Sequence[LiveEvent],
    policy: SessionPolicy,
    version_floor: int = 0,
) -> tuple[SessionUpdate, list[LiveEvent]] | None:
    """:func:`advance` for the common case, from the session's :class:`Tail` instead of its stored events:
    every applied arrival comes after the tail's last event (in order), none of them starts a new segment
    (gap, 24 h cap) and none makes a closed live segment sealable.  Then the only segment that changes is
    the tail, extended by the arrivals in order, which is what :func:`advance` computes from all events.
    ``tail`` None: the session has no live events (new, all sealed, or rebuilt from the warehouse); the
    applied arrivals then form one new segment (or the case does not apply).  ``known``: the ids of the
    stored live events (duplicates).  Returns the update and the applied events in order (the caller
    extends the tail's journeys with them), or None when the case does not apply (the caller runs
    :func:`advance`)."""
    if tail is not None and tail.policy != policy:
        return None
    added: dict[str, LiveEvent] = {}
    not_applied = duplicates = 0
    admits = ledger.sealed_end_ms is None
    for e in arrivals:
        if e.event_id in known or e.event_id in added:
            duplicates += 1
            continue
        if not admits and not ledger.admits(e, policy):
            not_applied += 1
            continue
        added[e.event_id] = e
    applied = list(added.values())
    if not applied:
        live, last_type = (tail.tally.summary(), tail.last_event_type) if tail is not None else (None, "")
        return SessionUpdate(ledger, (), frozenset(), (), (), live, last_type, not_applied, duplicates), []
    new = applied
    previous = -1
    for e in applied:  # strictly increasing times are in order: no order key to build
        if e.ts_ms <= previous:
            new = sorted(applied, key=_order)
            break
        previous = e.ts_ms
    if tail is None:
        start = last = new[0].ts_ms
        live_segments, seal_check, tally = 1, None, SegmentTally(ledger.sealed + 1)
    else:
        if new[0].order <= tail.last_order:
            return None
        start, last = tail.tally.started_ms, tail.tally.ended_ms
        live_segments, seal_check, tally = tail.live_segments, tail.seal_check_ms, tail.tally.copy()
    timeout, cap = policy.timeout_ms, policy.max_length_ms
    for e in new:
        ts = e.ts_ms
        if ts - last > timeout or ts - start > cap:
            return None
        last = ts
    if seal_check is not None and last > seal_check:
        return None
    tally.extend(new)
    summary = tally.summary()
    total = ledger.sealed + live_segments
    version = max(ledger.version + 1, version_floor)
    extended = Tail(policy, live_segments, seal_check, tally, new[-1].order, new[-1].event_type)
    added_now = tuple(applied)  # one tuple for both fields: nothing is sealed here
    update = SessionUpdate(
        ledger=Ledger(total, ledger.sealed, ledger.sealed_end_ms, ledger.frontier_ms, version),
        added=added_now,
        dropped=frozenset(),
        summaries=(summary,),
        removed_segments=tuple(range(total + 1, ledger.segments + 1)),
        live=summary,
        last_event_type=new[-1].event_type,
        not_applied=not_applied,
        duplicates=duplicates,
        applied=added_now,
        tail=extended,
    )
    return update, new
