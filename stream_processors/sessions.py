"""The sessions sink: live sessions in Redis and versioned session rows in ClickHouse ``sessions``.

``add`` turns each record into a :class:`~schemas.sessions.LiveEvent` (kept in arrival order per session).
``flush`` runs three steps, each retried on its own when it fails (the runner calls ``flush`` again):

1. *prepare*: load the touched sessions from Redis (ledger + live events + Redis clock), ask ClickHouse for
   the segments of session ids Redis does not know (new, expired, or never saved: see
   :func:`~stream_processors.sessionize.ledger_from_archive`), and compute every session's update with
   :func:`stream_processors.sessionize.advance` (pure).
2. *rows*: insert the rows of every changed segment, plus ``is_deleted`` rows for merged-away segments,
   with one dedup token.  Versions come from the Redis clock and the ledger, so they only grow.
3. *state*: save the new ledgers, events and live views to Redis in one transaction.

Rows before state: if the process dies between 2 and 3, the replayed records find the old state (or none,
and rows too recent to be from an expired state, which are then recomputed), compute the same segments
again and write them with a higher version; if it dies after 3, the replayed records are duplicates and
change nothing, and the rows they produced are already stored.  Either way the final rows equal a clean
run's.  The runner commits offsets only after ``flush`` returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.records import EventRecord
from schemas.rows import SESSION_COLUMNS, session_row, session_tombstone_row
from schemas.sessions import LiveEvent, live_event
from stream_processors import metrics
from stream_processors.session_store import SegmentIndex, SessionKey, SessionStore, SessionWrite
from stream_processors.sessionize import SessionPolicy, advance, ledger_from_archive
from stream_processors.sinks import NO_ORIGIN, Origin, RowWriter, check_record, content_token

__all__ = ["PolicySource", "SessionSink", "fixed_policy"]

log = logging.getLogger("productgraph.processor.sessions")

PolicySource = Callable[[str], SessionPolicy]
"""The session policy of a project id.  Hook for per-project ``session_timeout_minutes`` (Postgres
``projects.settings``, issue 5): a cached lookup goes here; until then every project gets the default."""


def fixed_policy(policy: SessionPolicy) -> PolicySource:
    return lambda project_id: policy


@dataclass
class _Plan:
    rows: list[list[Any]]
    token: str
    writes: list[SessionWrite]
    rows_stored: bool = False


class SessionSink:
    name = "sessions"

    def __init__(
        self,
        store: SessionStore,
        index: SegmentIndex,
        writer: RowWriter,
        policy: PolicySource,
        ttl_s: Callable[[SessionPolicy], int],
        kind: str = "sessions",
    ) -> None:
        self._store = store
        self._index = index
        self._writer = writer
        self._policy = policy
        self._ttl_s = ttl_s
        self._kind = kind
        self._arrivals: dict[SessionKey, list[LiveEvent]] = {}
        self._count = 0
        self._plan: _Plan | None = None

    def add(self, record: EventRecord, origin: Origin = NO_ORIGIN) -> None:
        check_record(record)
        event = live_event(record, origin.offset)
        key = SessionKey(record.org_id, record.project_id, record.session_id)
        self._arrivals.setdefault(key, []).append(event)
        self._count += 1

    def pending(self) -> int:
        return self._count

    async def flush(self) -> None:
        if self._plan is None:
            if not self._arrivals:
                return
            self._plan = await self._prepare()
        plan = self._plan
        if plan.rows and not plan.rows_stored:
            await self._writer.insert("sessions", plan.rows, SESSION_COLUMNS, plan.token)
            plan.rows_stored = True
            metrics.SESSION_ROWS.labels(kind=self._kind).inc(len(plan.rows))
        await self._store.save(plan.writes)
        self._plan = None
        self._arrivals = {}
        self._count = 0

    async def _prepare(self) -> _Plan:
        keys = list(self._arrivals)
        stored, clock_us = await self._store.load(keys)
        unknown = [k for k in keys if stored[k].ledger is None]
        archived = await self._index.segments(unknown) if unknown else {}
        rows: list[list[Any]] = []
        writes: list[SessionWrite] = []
        not_applied = 0
        for key in keys:
            policy = self._policy(key.project_id)
            state = stored[key]
            ledger = state.ledger
            if ledger is None:
                ledger = ledger_from_archive(archived.get(key, []), clock_us - self._ttl_s(policy) * 1_000_000)
            events = state.events if state.ledger is not None else {}
            update = advance(ledger, events, self._arrivals[key], policy, version_floor=clock_us)
            not_applied += update.not_applied
            if not update.changed:
                continue
            version = update.ledger.version
            rows += [session_row(key.org_id, key.project_id, key.session_id, s, version) for s in update.summaries]
            newest = update.live.ended_ms if update.live is not None else 0
            rows += [
                session_tombstone_row(key.org_id, key.project_id, key.session_id, n, version, newest)
                for n in update.removed_segments
            ]
            reset = state.ledger is None and bool(state.events)
            writes.append(SessionWrite(key, update, self._ttl_s(policy), policy.timeout_ms, reset_events=reset))
        if not_applied:
            metrics.SESSION_EVENTS_NOT_APPLIED.labels(kind=self._kind).inc(not_applied)
            log.info("%d events older than the live state of their session: stored, not sessionized", not_applied)
        token = content_token("sessions", (f"{r[1]}:{r[2]}:{r[3]}:{r[4]}" for r in rows))
        return _Plan(rows, token, writes)

    async def ping(self) -> bool:
        return await self._store.ping() and await self._writer.ping()
