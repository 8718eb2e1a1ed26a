"""Events as the funnel rules see them, computed from stored records (pure).

:func:`prepare_events` applies, in this order: dedup (rule 1: the first delivery of an event id counts),
the scan range ``[date_from, date_to + window)``, the total order (timestamp, sequence (missing = 0),
receive time, event id), identity (rule 4), session segments (rule 2, over every scanned event of the
session), the cohort filter, and step/exclusion matching.  The ClickHouse evaluator computes the same
columns in SQL; anything decided here must be decided identically there.

Decisions where the rules leave room (the SQL does the same):
- "receive order" is (receive time, ``cityHash64`` of the event id, event id): a total order that does not
  change between runs.  The hash (ClickHouse's own function, :func:`tie_hash`) lets the SQL order and
  de-duplicate by a number instead of carrying every event id string per entity; the id itself only
  separates two ids with the same 64-bit hash.
- an anonymous id is merged into the ``user.id`` of the first scanned event (in the total order) that
  carries both; events outside the scanned range are not consulted.
- segments are computed over the scanned events only (a session that began before ``date_from`` is
  segmented from its first scanned event).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from clickhouse_cityhash.cityhash import CityHash64

from query_api.funnels.result import NONE_VALUE
from query_api.funnels.spec import BREAKDOWN_COLUMNS, FunnelSpec
from schemas.matchers import matches
from schemas.records import EventRecord

__all__ = ["SEGMENT_MAX_MS", "FunnelEvent", "group_entities", "prepare_events", "tie_hash"]

SEGMENT_MAX_MS = 24 * 3600 * 1000  # a segment never spans more than 24 h from its first event


@dataclass(frozen=True, slots=True)
class FunnelEvent:
    ts: int
    sequence: int
    received: int
    event_id: str
    session_id: str
    person: str  # "user:<id>" | "anonymous:<id>" | "session:<id>"
    segment: int  # 1-based segment of the session
    seg_pos: int  # 0-based position inside the segment (every scanned event counts)
    steps: frozenset[int]  # 1-based steps whose matcher matches (regardless of the date range)
    exclusions: frozenset[int]  # ``after_step`` of every exclusion whose matcher matches
    can_start: bool  # early enough to be step 1 / an any-order window start (ts < date_to)
    breakdown: str


def _text(v: object) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _breakdown(rec: EventRecord, spec: FunnelSpec) -> str:
    b = spec.breakdown
    if b is None:
        return NONE_VALUE
    key = b.metadata_key
    if key is not None:
        value = _text(rec.metadata.get(key))
    elif b.property == "event_type":
        value = rec.event_type
    else:
        raw = rec.fields.get(BREAKDOWN_COLUMNS[b.property])
        value = "" if raw is None else str(raw)
    return value or NONE_VALUE


def tie_hash(event_id: str) -> int:
    """ClickHouse's ``cityHash64(event_id)``: orders events equal on (timestamp, sequence, receive time)."""
    value: int = CityHash64(event_id.encode())
    return value


def _order_key(rec: EventRecord) -> tuple[int, int, int, int, str]:
    seq = rec.fields.get("event.sequence")
    return (rec.ts_ms, seq if isinstance(seq, int) else 0, rec.received_ms, tie_hash(rec.event_id), rec.event_id)


def _segments(recs: list[EventRecord], timeout_ms: int) -> list[tuple[int, int]]:
    """(segment, position in segment) of each of a session's records, given in the total order."""
    out: list[tuple[int, int]] = []
    seg, pos, start, prev = 0, 0, 0, 0
    for i, r in enumerate(recs):
        if i == 0 or r.ts_ms - prev > timeout_ms or r.ts_ms - start > SEGMENT_MAX_MS:
            seg, pos, start = seg + 1, 0, r.ts_ms
        else:
            pos += 1
        prev = r.ts_ms
        out.append((seg, pos))
    return out


def prepare_events(records: Iterable[EventRecord], spec: FunnelSpec) -> list[FunnelEvent]:
    """Every scanned event of the project, in the total order, with identity, segment and matches."""
    first: dict[str, tuple[int, int, EventRecord]] = {}
    for i, rec in enumerate(records):
        seen = first.get(rec.event_id)
        if seen is None or (rec.received_ms, i) < seen[:2]:
            first[rec.event_id] = (rec.received_ms, i, rec)
    scanned = sorted(
        (r for _, _, r in first.values() if spec.scan_from_ms <= r.ts_ms < spec.scan_to_ms), key=_order_key
    )
    merged: dict[str, str] = {}
    for r in scanned:
        uid, anon = _text(r.fields.get("user.id")), _text(r.fields.get("user.anonymous_id"))
        if uid and anon:
            merged.setdefault(anon, uid)
    by_session: dict[str, list[EventRecord]] = {}
    for r in scanned:
        by_session.setdefault(r.session_id, []).append(r)
    segment_of: dict[str, tuple[int, int]] = {}
    for recs in by_session.values():
        for r, sp in zip(recs, _segments(recs, spec.session_timeout_ms), strict=True):
            segment_of[r.event_id] = sp
    cohort = spec.cohort
    if cohort is not None and cohort.subquery is not None:
        raise ValueError("cohort: the reference needs the cohort's user ids, not a subquery")
    out = []
    for r in scanned:
        uid, anon = _text(r.fields.get("user.id")), _text(r.fields.get("user.anonymous_id"))
        user = uid or merged.get(anon, "")
        if cohort is not None and user not in cohort.user_ids:
            continue
        person = f"user:{user}" if user else f"anonymous:{anon}" if anon else f"session:{r.session_id}"
        seg, pos = segment_of[r.event_id]
        ts, seq, received, _, event_id = _order_key(r)
        out.append(
            FunnelEvent(
                ts=ts,
                sequence=seq,
                received=received,
                event_id=event_id,
                session_id=r.session_id,
                person=person,
                segment=seg,
                seg_pos=pos,
                steps=frozenset(i for i, s in enumerate(spec.steps, start=1) if matches(s.matcher, r)),
                exclusions=frozenset(x.after_step for x in spec.exclusions if matches(x.matcher, r)),
                can_start=ts < spec.start_before_ms,
                breakdown=_breakdown(r, spec),
            )
        )
    return out


def group_entities(events: Iterable[FunnelEvent], spec: FunnelSpec) -> dict[str, list[FunnelEvent]]:
    """Events per counted entity, each list in the total order: the person (users, totals) or the session
    segment (sessions)."""
    groups: dict[str, list[FunnelEvent]] = {}
    for e in events:
        key = f"session:{e.session_id}#{e.segment}" if spec.count_by == "sessions" else e.person
        groups.setdefault(key, []).append(e)
    return groups
