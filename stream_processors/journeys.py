"""Journey progress of one session segment (pure: no I/O, no clock).  Semantics: ../shared/design/
analytics-semantics.md ("Journeys", precise rule 6).

Lifecycle.  When the sessions sink takes an event (``add``), :func:`match_tokens` evaluates the steps of the
project's active journeys against the full :class:`~schemas.records.EventRecord` and keeps only the result,
tokens ``journey_id/position``, in the :class:`~schemas.sessions.LiveEvent` (stored with the live events in
Redis).  A journey change therefore applies to events processed after the change is picked up; events
already processed keep the steps they matched then.  Whenever the sink recomputes a segment (any event
that changes it, late ones included), :func:`journey_progress` recomputes every active journey of the
project from the segment's ordered events, so a late or out-of-order event lands where it belongs.  Only
when the new events of a session all come after its newest segment's last event does the sink extend that
segment's runs instead (:class:`JourneyRun`, :func:`extend_runs`): the rule is a left-to-right fold, so
extending it by later events is the same as folding all of them.

Rule 6, exactly as implemented (``J`` = the journey's timeout):

* the first step-1 event enters; each next step is the first *later* event (in session order: timestamp,
  sequence, receive order) matching it within ``J`` of the previous step (``t - t_prev <= J``); one event
  advances at most one step; other events may come between;
* an event more than ``J`` after the last progress ends the attempt as ``abandoned`` (the session went on,
  the journey did not); a later step-1 event (that event included) starts a new attempt;
* reaching the last step is ``converted``, which is final: nothing after it counts;
* otherwise the status is the last attempt's: in the newest segment of the session ``pending``; in a
  segment that a later segment follows (closed for sure) ``bounced`` (step 1 only) or ``dropped``.

The newest segment's ``pending`` turns into ``bounced``/``dropped`` when the segment closes without a new
event (``now > closes_at``: the session timeout after its last event, or its 24 h cap).  Nothing is
written at that moment; readers resolve it with the row's ``closes_at`` (:func:`resolved_status`, and the
same expression in SQL, ``query_api/journeys/metrics.py``).  So rows depend only on the events, never on
when they were computed: a replay after a crash writes the same rows as a clean run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from schemas.matchers import Matcher, matches
from schemas.records import EventRecord
from schemas.sessions import LiveEvent, journey_token

__all__ = [
    "STATUSES",
    "JourneyProgress",
    "JourneyRun",
    "JourneySpec",
    "JourneyStep",
    "Status",
    "closed_status",
    "extend_runs",
    "journey_progress",
    "journey_runs",
    "match_tokens",
    "resolved_status",
    "runs_progress",
    "session_journey",
]

Status = Literal["pending", "converted", "bounced", "dropped", "abandoned"]
STATUSES: tuple[Status, ...] = ("pending", "converted", "bounced", "dropped", "abandoned")


@dataclass(frozen=True, slots=True)
class JourneyStep:
    id: str
    position: int  # as stored (1..100, unique in the journey); steps are evaluated in this order
    matcher: Matcher


@dataclass(frozen=True, slots=True)
class JourneySpec:
    """An active journey as the processor uses it; ``steps`` ordered by position."""

    id: str
    timeout_ms: int
    steps: tuple[JourneyStep, ...]


@dataclass(frozen=True, slots=True)
class JourneyProgress:
    """The reported attempt of one journey in one segment (the last attempt, or the converted one)."""

    journey_id: str
    status: Status
    step_times: tuple[int, ...]  # entry time (ms) of each step reached, step 1 first
    step_ids: tuple[str, ...]  # the ids of those steps
    attempts: int  # attempts started in the segment
    entries: frozenset[tuple[int, int]]  # (position, entered ms) of every step entry of every attempt

    @property
    def steps_reached(self) -> int:
        return len(self.step_times)

    @property
    def entered_ms(self) -> int:
        return self.step_times[0]

    @property
    def last_step_ms(self) -> int:
        return self.step_times[-1]

    @property
    def duration_ms(self) -> int:
        """Last step reached - step 1 (for converted attempts: the time to convert)."""
        return self.step_times[-1] - self.step_times[0]


_Candidates = tuple[tuple[str, Matcher], ...]  # (journey token, matcher) of steps


def _step_index(journeys: Iterable[JourneySpec]) -> tuple[dict[str, _Candidates], _Candidates]:
    """The steps by the event type their matcher names, and those that name none (tried on every event)."""
    by_type: dict[str, list[tuple[str, Matcher]]] = {}
    any_type: list[tuple[str, Matcher]] = []
    for j in journeys:
        for s in j.steps:
            step = (journey_token(j.id, s.position), s.matcher)
            if s.matcher.event_type is None:
                any_type.append(step)
            else:
                by_type.setdefault(s.matcher.event_type, []).append(step)
    return {t: tuple(steps) for t, steps in by_type.items()}, tuple(any_type)


# Indexes of the journey tuples in use (a project's cached configuration), by identity: the tuple is kept
# beside its index, so an id is never reused while its entry exists.
_indexes: dict[int, tuple[tuple[JourneySpec, ...], tuple[dict[str, _Candidates], _Candidates]]] = {}


def match_tokens(journeys: Iterable[JourneySpec], record: EventRecord) -> tuple[str, ...]:
    """Every (journey, step) the event matches, as sorted :func:`~schemas.sessions.journey_token` values.
    Only steps whose matcher names the event's type (or none) are tried: a matcher with another type
    never matches."""
    if isinstance(journeys, tuple):
        cached = _indexes.get(id(journeys))
        if cached is None or cached[0] is not journeys:
            if len(_indexes) >= 1024:
                _indexes.clear()
            cached = _indexes[id(journeys)] = (journeys, _step_index(journeys))
        by_type, any_type = cached[1]
    else:
        by_type, any_type = _step_index(journeys)
    hits = [token for token, m in by_type.get(record.event_type, ()) if matches(m, record)]
    hits += [token for token, m in any_type if matches(m, record)]
    if len(hits) > 1:
        hits.sort()
    return tuple(hits)


def journey_progress(
    events: Sequence[LiveEvent], journeys: Iterable[JourneySpec], newest: bool
) -> list[JourneyProgress]:
    """Progress of each journey in a segment whose events are ``events`` in session order; ``newest``: no
    later segment of the session exists (the segment may still grow).  Journeys never entered are left out."""
    if not any(e.journeys for e in events):
        return []
    out: list[JourneyProgress] = []
    for journey in journeys:
        if journey.steps:
            p = JourneyRun().extend(journey, events).progress(journey, newest)
            if p is not None:
                out.append(p)
    return out


@dataclass(slots=True)
class JourneyRun:
    """Rule 6 folded over a segment's events in order, for one journey: the current attempt's step times,
    every entry, the attempts, and whether the attempt is abandoned or converted.  Folding ``a`` then
    ``b`` is folding ``a + b`` (the fold only moves forward), so the runs of a segment's journeys can be
    extended by later events (:func:`extend_runs`) instead of recomputed."""

    times: list[int] = field(default_factory=list)  # the current attempt's step entry times
    entries: set[tuple[int, int]] = field(default_factory=set)
    attempts: int = 0
    abandoned: bool = False
    converted: bool = False

    def copy(self) -> JourneyRun:
        return JourneyRun(list(self.times), set(self.entries), self.attempts, self.abandoned, self.converted)

    def extend(self, journey: JourneySpec, events: Sequence[LiveEvent]) -> JourneyRun:
        """Fold ``events`` (in order, after the ones folded so far) into this run; returns it."""
        if self.converted:
            return self  # converted is final: nothing after it counts
        positions = [s.position for s in journey.steps]
        tokens = [journey_token(journey.id, p) for p in positions]  # compared with LiveEvent.journeys as is
        times, entries, attempts, abandoned = self.times, self.entries, self.attempts, self.abandoned
        timeout = journey.timeout_ms
        for e in events:
            if times and not abandoned and e.ts_ms - times[-1] > timeout:
                abandoned = True  # the session went on past the timeout without progress
            if not e.journeys:
                continue
            if not times or abandoned:
                if tokens[0] in e.journeys:
                    times, abandoned, attempts = [e.ts_ms], False, attempts + 1
                    entries.add((positions[0], e.ts_ms))
                continue
            if tokens[len(times)] in e.journeys:
                entries.add((positions[len(times)], e.ts_ms))
                times.append(e.ts_ms)
                if len(times) == len(positions):
                    self.converted = True
                    break
        self.times, self.attempts, self.abandoned = times, attempts, abandoned
        return self

    def progress(self, journey: JourneySpec, newest: bool) -> JourneyProgress | None:
        """The reported attempt (None: the journey was never entered)."""
        times = self.times
        if not times:
            return None
        status: Status
        if self.converted:
            status = "converted"
        elif self.abandoned:
            status = "abandoned"
        elif newest:
            status = "pending"
        else:
            status = "bounced" if len(times) == 1 else "dropped"
        step_ids = tuple(s.id for s in journey.steps[: len(times)])
        return JourneyProgress(journey.id, status, tuple(times), step_ids, self.attempts, frozenset(self.entries))


def journey_runs(events: Sequence[LiveEvent], journeys: Sequence[JourneySpec]) -> tuple[JourneyRun, ...]:
    """One run per journey (in ``journeys`` order) over a segment's ordered events."""
    return extend_runs(tuple(JourneyRun() for _ in journeys), journeys, events)


def extend_runs(
    runs: Sequence[JourneyRun], journeys: Sequence[JourneySpec], events: Sequence[LiveEvent]
) -> tuple[JourneyRun, ...]:
    """``runs`` (of :func:`journey_runs` with the same ``journeys``) extended by later events in order, as
    new runs (``runs`` are left as they are).  A run that no event can change is shared, not copied."""
    if not any(e.journeys for e in events):
        # Only the abandonment of an entered, unconverted attempt can change without journey steps.
        return tuple(
            run.copy().extend(j, events) if run.times and not run.converted and not run.abandoned else run
            for run, j in zip(runs, journeys, strict=True)
        )
    return tuple(
        run.copy().extend(j, events) if j.steps and not run.converted else run
        for run, j in zip(runs, journeys, strict=True)
    )


def runs_progress(runs: Sequence[JourneyRun], journeys: Sequence[JourneySpec], newest: bool) -> list[JourneyProgress]:
    """:func:`journey_progress` of the segment the runs were folded over."""
    out: list[JourneyProgress] = []
    for run, journey in zip(runs, journeys, strict=True):
        if journey.steps:
            p = run.progress(journey, newest)
            if p is not None:
                out.append(p)
    return out


def closed_status(p: JourneyProgress) -> Status:
    """The status as if the segment had closed: ``pending`` becomes ``bounced`` (step 1 only) or ``dropped``.
    What the ``sessions`` row stores; readers show ``pending`` while the segment may still continue."""
    if p.status != "pending":
        return p.status
    return "bounced" if len(p.step_times) == 1 else "dropped"


def resolved_status(status: str, steps_reached: int, closes_at_ms: int, now_ms: int) -> str:
    """A stored status as of ``now_ms``: ``pending`` of a segment that closed since is ``bounced``/``dropped``."""
    if status == "pending" and now_ms > closes_at_ms:
        return "bounced" if steps_reached == 1 else "dropped"
    return status


def session_journey(progress: Sequence[JourneyProgress]) -> JourneyProgress | None:
    """The journey a ``sessions`` row names (``journey_id``, ``last_journey_step_id``, ``conversion_status``):
    the most recent progress (latest step entry), then the furthest, then the smallest journey id, so that
    the choice does not depend on the order journeys are listed in."""
    if not progress:
        return None
    return min(progress, key=lambda p: (-p.last_step_ms, -p.steps_reached, p.journey_id))
