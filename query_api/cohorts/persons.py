"""The "person" of an event (rule 4), for cohorts, retention and trends: in Python and as ClickHouse SQL.

Rule 4: ``user.id``; else the anonymous id, merged into a ``user.id`` when any event carries both; else
the session.  Keys are ``user:<id>``, ``anonymous:<id>``, ``session:<id>``, exactly the funnels' person.

Python: :func:`person_events` *is* the funnels' code (:func:`query_api.funnels.events.prepare_events`):
dedup (rule 1), the total order, the merge decision (an anonymous id joins the ``user.id`` of the first
scanned event, in the total order, that carries both; events outside the scanned range are not
consulted), segments (rule 2) and matcher hits.  The references of this package and of retention/paths
are written on top of it, so they cannot drift from the funnels.

SQL: :func:`person_source` is the same merge as the funnels' ``anon`` CTE, written as a joinable
subquery with caller-chosen aliases and parameter names so that it can sit inside another query (a cohort
subquery inside a retention query, say) without name clashes.  The integration tests check it against
:func:`person_events` on the same stored events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from query_api.funnels.events import FunnelEvent, prepare_events
from query_api.funnels.spec import DEFAULT_SESSION_TIMEOUT_MS, Breakdown, FunnelSpec, FunnelStep
from query_api.funnels.sql import ORDER_SQL
from schemas.matchers import Matcher
from schemas.records import EventRecord

__all__ = ["ANY", "PersonSource", "person_events", "person_source"]

ANY = Matcher()  # no condition: matches every event (``to_clickhouse`` gives ``1``)


@dataclass(frozen=True, slots=True)
class PersonSource:
    """``FROM {from_sql} WHERE {where}`` reads the tenant's events in a range, ``person`` names each one."""

    from_sql: str
    where: str
    person: str


def person_source(e: str, a: str, from_param: str, to_param: str) -> PersonSource:
    """Events aliased ``e`` with ``timestamp`` in ``[{from_param}, {to_param})`` (Int64 ms parameters), joined
    to the anonymous-id merge ``a``; both reads carry the tenant condition."""

    def rng(t: str) -> str:
        return (
            f"{t}timestamp >= fromUnixTimestamp64Milli({{{from_param}:Int64}}, 'UTC') "
            f"AND {t}timestamp < fromUnixTimestamp64Milli({{{to_param}:Int64}}, 'UTC')"
        )

    merge = (
        f"(SELECT user_anonymous_id AS anon_id, argMin(user_id, {ORDER_SQL}) AS uid FROM events FINAL "
        f"WHERE org_id = {{org:UUID}} AND project_id = {{project:UUID}} AND {rng('')} "
        "AND user_id != '' AND user_anonymous_id != '' GROUP BY user_anonymous_id)"
    )
    puid = f"if({e}.user_id != '', {e}.user_id, if({e}.user_anonymous_id != '', {a}.uid, ''))"
    person = (
        f"multiIf({puid} != '', concat('user:', {puid}), {e}.user_anonymous_id != '', "
        f"concat('anonymous:', {e}.user_anonymous_id), concat('session:', {e}.session_id))"
    )
    return PersonSource(
        from_sql=f"events AS {e} FINAL LEFT JOIN {merge} AS {a} ON {e}.user_anonymous_id = {a}.anon_id",
        where=f"{e}.org_id = {{org:UUID}} AND {e}.project_id = {{project:UUID}} AND {rng(e + '.')}",
        person=person,
    )


def person_events(
    records: Iterable[EventRecord],
    date_from: datetime,
    scan_to: datetime,
    matchers: Sequence[Matcher] = (),
    *,
    start_before: datetime | None = None,
    timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    breakdown: str | None = None,
) -> list[tuple[EventRecord, FunnelEvent]]:
    """Every event with ``timestamp`` in ``[date_from, scan_to)``, deduplicated and in the total order, as
    the funnels see it (person, segment, ``steps`` = 1-based indexes of ``matchers`` it matches, breakdown
    value of the column ``breakdown``), next to the record that was kept (the first delivery)."""
    steps = [FunnelStep(m) for m in matchers]
    steps += [FunnelStep(ANY)] * (2 - len(steps))
    start = start_before or scan_to - timedelta(milliseconds=1)
    spec = FunnelSpec(
        steps=tuple(steps),
        date_from=date_from,
        date_to=start,
        window_ms=max(1, int((scan_to - start).total_seconds() * 1000)),
        session_timeout_ms=timeout_ms,
        breakdown=None if breakdown is None else Breakdown(breakdown),
    )
    kept: dict[str, tuple[int, int, EventRecord]] = {}
    recs = list(records)
    for i, rec in enumerate(recs):
        seen = kept.get(rec.event_id)
        if seen is None or (rec.received_ms, i) < seen[:2]:
            kept[rec.event_id] = (rec.received_ms, i, rec)
    return [(kept[ev.event_id][2], ev) for ev in prepare_events(recs, spec)]
