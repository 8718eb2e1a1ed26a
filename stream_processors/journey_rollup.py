"""What one session update means beyond its ``sessions`` rows (pure): ``journey_sessions`` rows, the journey
fields of the ``sessions`` rows, and the session's contribution to the project's real-time keys.

Called by the sessions sink for every session whose segments changed (:class:`~stream_processors.sessionize.
SessionUpdate`), with the session's stored journey entries and the Redis clock.

Journey rows.  Every recomputed segment (``update.summaries``) gets one row per active journey it enters
(:func:`stream_processors.journeys.journey_progress`), with the update's version.  A (journey, segment)
row that existed before (known from the stored entries) and is no longer computed, because the segment was
merged away or renumbered by a late event, gets an ``is_deleted`` row.  Journeys that are no longer active
are left alone: their rows stay as they were last computed, and their entries leave the state uncounted.

Step counters.  The session's state keeps the set of step entries of its live segments already added to
``rt:{project}:journey:{journey}:step:{position}:{minute}`` (``segment|journey|position|entered_ms``).  For
the recomputed segments the new set is compared with the stored one: new entries add 1 to their minute,
vanished ones (a late event moved an entry, or merged a segment) subtract 1.  So every counter always
equals the entries of the current events, whatever the batch cuts: a replay, a crash between rows and
state, or a late event never counts an entry twice.  Entries of sealed segments are final and leave the
state.  Minutes older than :data:`~schemas.sessions.RT_TTL_S` are not touched (nobody reads them).

Events per minute add the update's ``applied`` events (duplicates and refused events are not applied);
the active sets get the session and each applied event's user (:func:`~schemas.sessions.user_identity`)
scored by their newest event.  All of it is saved in the same Redis script as the session state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.rows import JourneyRowValues
from schemas.sessions import (
    RT_ACTIVE_KEEP_MS,
    RT_TTL_S,
    active_sessions_key,
    active_users_key,
    epm_key,
    journey_session_json_row,
    journey_session_tombstone_json_row,
    journey_step_key,
    minute_of,
)
from stream_processors.journeys import (
    JourneyProgress,
    JourneySpec,
    closed_status,
    journey_progress,
    session_journey,
)
from stream_processors.session_store import RealtimeUpdate, SessionKey
from stream_processors.sessionize import SessionPolicy, SessionUpdate

__all__ = ["SessionRollup", "rollup"]


@dataclass(slots=True)  # immutable by convention, see sessionize.Ledger
class SessionRollup:
    journey_rows: list[bytes]  # JSONEachRow lines (schemas.sessions.journey_session_json_row)
    journey_keys: list[str]  # per row "project:journey:session:segment:version" (the insert's dedup token)
    session_journeys: dict[int, tuple[str, str, str]]  # segment -> sessions row journey fields
    entries: frozenset[str]  # to store with the session
    realtime: RealtimeUpdate


def _entry(segment: int, journey_id: str, position: int, ts_ms: int) -> str:
    return f"{segment}|{journey_id}|{position}|{ts_ms}"


def _parse(entry: str) -> tuple[int, str, int, int]:
    segment, journey_id, position, ts = entry.split("|")
    return int(segment), journey_id, int(position), int(ts)


def rollup(
    key: SessionKey,
    update: SessionUpdate,
    journeys: Sequence[JourneySpec],
    stored_entries: frozenset[str],
    policy: SessionPolicy,
    now_ms: int,
    identities: Mapping[str, str] | None = None,
    progress: Sequence[Sequence[JourneyProgress]] | None = None,
) -> SessionRollup:
    """``identities``: the active-users member of applied events that have one other than their ``user_id``
    (by event id); events without either count as their session.  ``progress``: the journey progress of
    each of ``update.summaries`` when the caller has it (:func:`~stream_processors.journeys.runs_progress`;
    required for an update without ``segment_events``), else computed from ``update.segment_events``."""
    counters: dict[str, int] = {}
    oldest_minute = minute_of(now_ms) - RT_TTL_S // 60
    if not journeys and not stored_entries:  # nothing to compute, compare or hide
        realtime = _realtime(key, update, counters, oldest_minute, now_ms, identities)
        return SessionRollup([], [], {}, frozenset(), realtime)
    version = update.ledger.version
    active = {j.id: j for j in journeys}
    touched = {s.segment for s in update.summaries} | set(update.removed_segments)
    old = {e: _parse(e) for e in stored_entries}
    old_touched = {e for e, (seg, jid, _, _) in old.items() if seg in touched and jid in active}
    old_rows = {(seg, jid) for e, (seg, jid, _, _) in old.items() if e in old_touched}
    rows: list[bytes] = []
    row_keys: list[str] = []
    new_touched: set[str] = set()
    new_rows: set[tuple[int, str]] = set()
    session_journeys: dict[int, tuple[str, str, str]] = {}
    if progress is None:
        # Stored statuses depend on the segment's events only (never on which segment was newest when a batch
        # ran: a crash and replay must write what a clean run writes): journey rows keep ``pending`` until
        # a final status, resolved with ``closes_at`` by readers; the sessions row takes the closed form.
        progress = [journey_progress(events, journeys, newest=True) for events in update.segment_events]
    for summary, found in zip(update.summaries, progress, strict=True):
        if not found:
            continue
        closes_at = min(summary.ended_ms + policy.timeout_ms, summary.started_ms + policy.max_length_ms)
        for p in found:
            rows.append(_row(key, summary.segment, version, p, active[p.journey_id], closes_at))
            row_keys.append(f"{key.project_id}:{p.journey_id}:{key.session_id}:{summary.segment}:{version}")
            new_rows.add((summary.segment, p.journey_id))
            new_touched.update(_entry(summary.segment, p.journey_id, pos, ts) for pos, ts in p.entries)
        chosen = session_journey(found)
        if chosen is not None:
            session_journeys[summary.segment] = (chosen.journey_id, chosen.step_ids[-1], closed_status(chosen))
    at = update.live.ended_ms if update.live is not None else max((s.ended_ms for s in update.summaries), default=0)
    for segment, journey_id in sorted(old_rows - new_rows):
        hide = (key.org_id, key.project_id, journey_id, key.session_id, segment, version, at)
        rows.append(journey_session_tombstone_json_row(*hide))
        row_keys.append(f"{key.project_id}:{journey_id}:{key.session_id}:{segment}:{version}")
    sealed = update.ledger.sealed
    keep = {e for e, (seg, jid, _, _) in old.items() if seg not in touched and jid in active and seg > sealed}
    keep |= {e for e in new_touched if _parse(e)[0] > sealed}
    for entries, delta in ((new_touched - old_touched, 1), (old_touched - new_touched, -1)):
        for e in entries:
            _, journey_id, position, ts = _parse(e)
            if minute_of(ts) >= oldest_minute:
                step_key = journey_step_key(key.project_id, journey_id, position, minute_of(ts))
                counters[step_key] = counters.get(step_key, 0) + delta
    realtime = _realtime(key, update, counters, oldest_minute, now_ms, identities)
    return SessionRollup(rows, row_keys, session_journeys, frozenset(keep), realtime)


def _realtime(
    key: SessionKey,
    update: SessionUpdate,
    counters: dict[str, int],
    oldest_minute: int,
    now_ms: int,
    identities: Mapping[str, str] | None,
) -> RealtimeUpdate:
    """Adds events per minute to ``counters``; the active-set members of the applied events."""
    cutoff = now_ms - RT_ACTIVE_KEEP_MS
    minutes: dict[int, int] = {}
    users: dict[str, int] = {}
    session_last = 0
    ids = identities or {}
    anonymous = f"session:{key.session_id}"
    for e in update.applied:
        ts = e.ts_ms
        minute = ts // 60_000
        if minute >= oldest_minute:
            minutes[minute] = minutes.get(minute, 0) + 1
        if ts >= cutoff:
            member = e.user_id or ids.get(e.event_id) or anonymous
            best = users.get(member)
            if best is None or ts > best:
                users[member] = ts
            if ts > session_last:
                session_last = ts
    for minute, n in minutes.items():
        epm = epm_key(key.project_id, minute)
        counters[epm] = counters.get(epm, 0) + n
    active: list[tuple[str, str, int]] = []
    if session_last:
        active.append((active_sessions_key(key.project_id), key.session_id, session_last))
    active += [(active_users_key(key.project_id), u, ts) for u, ts in sorted(users.items())]
    return RealtimeUpdate(
        counters=tuple((k, d, _expire_at(k)) for k, d in sorted(counters.items()) if d),
        active=tuple(active),
    )


def _expire_at(counter_key: str) -> int:
    """Minute keys end in the minute number: they expire RT_TTL_S after the minute."""
    return int(counter_key.rsplit(":", 1)[1]) * 60 + RT_TTL_S


def _row(key: SessionKey, segment: int, version: int, p: JourneyProgress, j: JourneySpec, closes_at: int) -> bytes:
    values = JourneyRowValues(
        journey_id=p.journey_id,
        status=p.status,
        step_times=p.step_times,
        step_count=len(j.steps),
        last_step_position=j.steps[p.steps_reached - 1].position,
        last_step_id=p.step_ids[-1],
        attempts=p.attempts,
        closes_at_ms=closes_at,
    )
    return journey_session_json_row(key.org_id, key.project_id, key.session_id, segment, version, values)
