"""The sessions sink: live sessions in Redis, versioned rows in ClickHouse ``sessions`` and
``journey_sessions``, and the project's real-time counters in Redis.

``add`` turns each record into a :class:`~schemas.sessions.LiveEvent` (kept in arrival order per session),
with the journey steps it matches (:func:`stream_processors.journeys.match_tokens`) under the project's
cached configuration (:mod:`stream_processors.project_config`); a record of a project whose configuration
is not cached yet is kept until ``flush`` loaded it (at most one batch of records).
``seal`` closes the batch that the next ``flush`` writes (``flush`` seals itself when nothing is sealed): the
runner seals a batch and flushes it while it adds the next records, which wait for the flush after it.
``flush`` runs these steps, each retried on its own when it fails (the runner calls ``flush`` again):

1. *prepare*: refresh the configuration of the batch's projects (session timeout, journeys; raises while
   a project's was never loadable), load the touched sessions from Redis (ledger + live events + journey
   entries + Redis clock), ask ClickHouse for the segments of session ids Redis does not know (new,
   expired, or never saved: see :func:`~stream_processors.sessionize.ledger_from_archive`), and compute
   every session's update with :func:`stream_processors.sessionize.advance` and its journeys, rows and
   counters with :func:`stream_processors.journey_rollup.rollup` (both pure).  The common cases skip the
   stored events: a session without live events, or one whose arrivals only extend its newest segment
   (after its last event, no new segment, no seal), is updated from the segment's running attributes and
   journey runs that the store keeps beside the events it saved (:class:`_Memo`,
   :func:`~stream_processors.sessionize.extend_tail`), with the same result as the full recompute
   (tests/unit/test_sessionize_incremental.py compares both on random streams).
2. *rows*: insert the rows of every changed segment, plus ``is_deleted`` rows for merged-away segments,
   with one dedup token per table (``sessions``, then ``journey_sessions``, same versions), as
   ``JSONEachRow`` lines (:func:`schemas.sessions.session_json_row`: the stored values of
   :func:`schemas.rows.session_row` for far less of this process's CPU).  Versions come from the Redis
   clock and the ledger, so they only grow.
3. *state*: save the new ledgers, events, live views, journey entries and counter increments to Redis,
   one script per chunk of sessions (:class:`~stream_processors.session_store.RedisSessionStore`).

Rows before state: if the process dies between 2 and 3, the replayed records find the old state (or none,
and rows too recent to be from an expired state, which are then recomputed), compute the same segments
again and write them with a higher version; if it dies after 3, the replayed records are duplicates and
change nothing, and the rows they produced are already stored.  Either way the final rows equal a clean
run's.  The runner commits offsets only after ``flush`` returned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from schemas.records import EventRecord
from schemas.rows import JOURNEY_SESSION_COLUMNS, SESSION_COLUMNS
from schemas.sessions import LiveEvent, live_event, session_json_row, session_tombstone_json_row, user_identity
from stream_processors import metrics
from stream_processors.journey_rollup import rollup
from stream_processors.journeys import (
    JourneyProgress,
    JourneyRun,
    JourneySpec,
    extend_runs,
    journey_progress,
    journey_runs,
    match_tokens,
    runs_progress,
)
from stream_processors.project_config import ProjectConfig
from stream_processors.session_store import PackedEvents, SegmentIndex, SessionKey, SessionStore, SessionWrite
from stream_processors.sessionize import SessionPolicy, Tail, advance, extend_tail, ledger_from_archive
from stream_processors.sinks import NO_ORIGIN, LineWriter, Origin, check_record, content_token

__all__ = ["PolicySource", "ProjectConfigs", "SessionSink", "fixed_policy"]

_NO_JOURNEY = ("", "", "")

log = logging.getLogger("productgraph.processor.sessions")

PolicySource = Callable[[str], SessionPolicy]
"""The base session policy of a project id (length cap, late horizon; the timeout unless the sink has
per-project configuration, whose ``session_timeout_minutes`` then replaces it)."""


def fixed_policy(policy: SessionPolicy) -> PolicySource:
    return lambda project_id: policy


class ProjectConfigs(Protocol):
    """Per-project configuration (:class:`stream_processors.project_config.ProjectConfigCache`)."""

    def get(self, project_id: str) -> ProjectConfig | None: ...

    async def prefetch(self, projects: set[tuple[str, str]]) -> None: ...


@dataclass(slots=True)  # immutable by convention, see sessionize.Ledger
class _Memo:
    """Kept by the store beside a session's saved events (for that ledger version): its newest live
    segment and the journey runs over it, computed with ``journeys``, so that the next update that only
    appends to that segment extends them (:func:`~stream_processors.sessionize.extend_tail`,
    :func:`~stream_processors.journeys.extend_runs`) instead of recomputing from every live event."""

    tail: Tail
    journeys: tuple[JourneySpec, ...]
    runs: tuple[JourneyRun, ...]


@dataclass
class _Batch:
    """Records added between two seals, per session in arrival order."""

    # By (org_id, project_id, session_id): a tuple per record is cheaper than a SessionKey (made per session).
    arrivals: dict[tuple[str, str, str], list[LiveEvent]] = field(default_factory=dict)
    unmatched: list[tuple[tuple[str, str, str], int, EventRecord]] = field(default_factory=list)  # no config at add()
    identities: dict[str, str] = field(default_factory=dict)  # event id -> active-users member, not its user.id
    count: int = 0


@dataclass
class _Plan:
    rows: list[bytes]  # JSONEachRow lines
    token: str
    journey_rows: list[bytes]
    journey_token: str
    writes: list[SessionWrite]
    now_ms: int
    rows_stored: bool = False
    journey_rows_stored: bool = False


class SessionSink:
    name = "sessions"

    def __init__(
        self,
        store: SessionStore,
        index: SegmentIndex,
        writer: LineWriter,
        policy: PolicySource,
        ttl_s: Callable[[SessionPolicy], int],
        kind: str = "sessions",
        config: ProjectConfigs | None = None,
    ) -> None:
        self._store = store
        self._index = index
        self._writer = writer
        self._policy = policy
        self._ttl_s = ttl_s
        self._kind = kind
        self._config = config
        self._open = _Batch()  # what add() fills
        self._sealed: _Batch | None = None  # what flush() writes
        self._plan: _Plan | None = None

    def add(self, record: EventRecord, origin: Origin = NO_ORIGIN) -> None:
        check_record(record)
        batch = self._open
        key = (record.org_id, record.project_id, record.session_id)
        arrivals = batch.arrivals.get(key)
        if arrivals is None:
            arrivals = batch.arrivals[key] = []
        tokens: tuple[str, ...] = ()
        if self._config is not None:
            config = self._config.get(record.project_id)
            if config is None:
                batch.unmatched.append((key, len(arrivals), record))
            elif config.journeys:
                tokens = match_tokens(config.journeys, record)
        event = live_event(record, origin.offset, tokens)
        if not event.user_id and record.fields.get("user.anonymous_id"):
            batch.identities[record.event_id] = user_identity(record)
        arrivals.append(event)
        batch.count += 1

    def pending(self) -> int:
        return self._open.count + (self._sealed.count if self._sealed is not None else 0)

    def seal(self) -> None:
        """The next ``flush`` writes the records added so far; later ones wait for the flush after it."""
        if self._sealed is not None:
            raise RuntimeError("sessions: the sealed batch was not flushed yet")
        self._sealed, self._open = self._open, _Batch()

    async def flush(self) -> None:
        if self._sealed is None:
            self.seal()
        sealed = self._sealed
        assert sealed is not None
        if self._plan is None:
            if not sealed.arrivals:
                self._sealed = None
                return
            self._plan = await self._prepare(sealed)
        plan = self._plan
        # The two ClickHouse inserts are independent (each idempotent by its token, each marked stored on its
        # own, so a retry re-sends only what failed) and go together; Redis moves on only after both.
        await asyncio.gather(self._store_rows(plan), self._store_journey_rows(plan))
        await self._store.save(plan.writes, plan.now_ms)
        self._plan = None
        self._sealed = None

    async def _store_rows(self, plan: _Plan) -> None:
        if plan.rows and not plan.rows_stored:
            await self._writer.insert_lines("sessions", plan.rows, SESSION_COLUMNS, plan.token)
            plan.rows_stored = True
            metrics.SESSION_ROWS.labels(kind=self._kind).inc(len(plan.rows))

    async def _store_journey_rows(self, plan: _Plan) -> None:
        if plan.journey_rows and not plan.journey_rows_stored:
            await self._writer.insert_lines(
                "journey_sessions", plan.journey_rows, JOURNEY_SESSION_COLUMNS, plan.journey_token
            )
            plan.journey_rows_stored = True

    async def _configure(self, batch: _Batch) -> None:
        """Load the batch's project configurations; match the records kept because theirs was not cached."""
        if self._config is None:
            return
        await self._config.prefetch({(org_id, project_id) for org_id, project_id, _ in batch.arrivals})
        for key, i, record in batch.unmatched:
            config = self._config.get(key[1])
            if config is not None and config.journeys:
                tokens = match_tokens(config.journeys, record)
                if tokens:
                    batch.arrivals[key][i] = replace(batch.arrivals[key][i], journeys=tokens)
        batch.unmatched = []

    def _project(self, project_id: str) -> tuple[SessionPolicy, tuple[JourneySpec, ...], int]:
        """The project's policy, journeys and live-state TTL (s), as configured now."""
        config = self._config.get(project_id) if self._config is not None else None
        base = self._policy(project_id)
        policy = config.policy(base) if config is not None else base
        return policy, config.journeys if config is not None else (), self._ttl_s(policy)

    async def _prepare(self, batch: _Batch) -> _Plan:
        await self._configure(batch)
        keys = [SessionKey(*k) for k in batch.arrivals]
        arrivals = list(batch.arrivals.values())
        stored, clock_us = await self._store.load(keys)
        now_ms = clock_us // 1000
        unknown = [k for k in keys if stored[k].ledger is None]
        archived = await self._index.segments(unknown) if unknown else {}
        rows: list[bytes] = []
        row_keys: list[str] = []  # "project:session:segment:version" per row: the insert's dedup token
        journey_rows: list[bytes] = []
        journey_keys: list[str] = []
        writes: list[SessionWrite] = []
        not_applied = 0
        projects: dict[str, tuple[SessionPolicy, tuple[JourneySpec, ...], int]] = {}  # fixed for the batch
        for key, arrived in zip(keys, arrivals, strict=True):
            project = projects.get(key.project_id)
            if project is None:
                project = projects[key.project_id] = self._project(key.project_id)
            policy, journeys, ttl = project
            state = stored[key]
            ledger = state.ledger
            if ledger is None:
                ledger = ledger_from_archive(archived.get(key, []), clock_us - ttl * 1_000_000)
            events = state.events if state.ledger is not None else {}
            # The common cases without the stored events: a session with none, or one whose newest segment
            # the arrivals only extend (see _Memo); anything else is recomputed from all of them.
            memo = state.memo if events else None
            fast = None
            if not events:
                fast = extend_tail(None, ledger, events, arrived, policy, version_floor=clock_us)
            elif type(memo) is _Memo and memo.journeys == journeys:
                known = events.ids if type(events) is PackedEvents else events
                fast = extend_tail(memo.tail, ledger, known, arrived, policy, version_floor=clock_us)
            runs: tuple[JourneyRun, ...] = ()
            progress: list[list[JourneyProgress]] | None = None
            if fast is not None:
                update, extension = fast
                not_applied += update.not_applied
                if not update.changed:
                    continue
                if journeys and type(memo) is _Memo:
                    runs = extend_runs(memo.runs, journeys, extension)
                elif journeys:
                    runs = journey_runs(extension, journeys)
                progress = [runs_progress(runs, journeys, True)]
            else:
                update = advance(ledger, events, arrived, policy, version_floor=clock_us)
                not_applied += update.not_applied
                if not update.changed:
                    continue
                if journeys and update.tail is not None:
                    runs = journey_runs(update.segment_events[-1], journeys)
                    progress = [journey_progress(ev, journeys, True) for ev in update.segment_events[:-1]]
                    progress.append(runs_progress(runs, journeys, True))
            version = update.ledger.version
            done = rollup(key, update, journeys, state.journey_entries, policy, now_ms, batch.identities, progress)
            if done.journey_rows:
                journey_rows += done.journey_rows
                journey_keys += done.journey_keys
            org_id, project_id, session_id = key.org_id, key.project_id, key.session_id
            named = done.session_journeys
            for summary in update.summaries:
                fields = named.get(summary.segment, _NO_JOURNEY) if named else _NO_JOURNEY
                rows.append(session_json_row(org_id, project_id, session_id, summary, version, fields))
                row_keys.append(f"{project_id}:{session_id}:{summary.segment}:{version}")
            if update.removed_segments:
                newest = update.live.ended_ms if update.live is not None else 0
                for n in update.removed_segments:
                    rows.append(session_tombstone_json_row(org_id, project_id, session_id, n, version, newest))
                    row_keys.append(f"{project_id}:{session_id}:{n}:{version}")
            reset = state.ledger is None and bool(state.events)
            memo = _Memo(update.tail, journeys, runs) if update.tail is not None else None
            writes.append(SessionWrite(key, update, ttl, policy.timeout_ms, reset, done.entries, done.realtime, memo))
        if not_applied:
            metrics.SESSION_EVENTS_NOT_APPLIED.labels(kind=self._kind).inc(not_applied)
            log.info("%d events older than the live state of their session: stored, not sessionized", not_applied)
        token = content_token("sessions", row_keys)
        journey_token = content_token("journey_sessions", journey_keys)
        return _Plan(rows, token, journey_rows, journey_token, writes, now_ms)

    async def ping(self) -> bool:
        return await self._store.ping() and await self._writer.ping()
