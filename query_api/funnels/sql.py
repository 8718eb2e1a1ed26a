"""The funnel as ClickHouse SQL (text and bound parameters; pure, no I/O).

One query, in stages (CTEs):

``anon``   anonymous id -> user id, from the first scanned event carrying both (rule 4); PREWHERE reads only
           ``user_anonymous_id`` for most rows, so it costs little when few events carry both ids.  ``ev``
           looks it up with ``transform`` over two sorted constant arrays (no join).
``ev``     one row per scanned event (tenant and range bound): its order key, a step bitmask (bit k-1: step
           k's matcher), an exclusion bitmask (bit g-1: an exclusion after step g), whether it may start a
           path, the breakdown value, the person and the cohort flag; steps with the same matcher share one
           condition (evaluated once, setting all their bits).  When no segment is needed, PREWHERE
           keeps only events matching some step or exclusion, so other columns are read for those alone.
``segd``   (sessions count, strict mode) per session, every event in the total order: segment numbers by
           rule 2 and positions inside the segment.
``ent``    per counted entity, its events sorted by (timestamp, sequence, receive time, event id); for the
           SQL kernel without segments only the columns it reads (:data:`_LEAN_TUPLE`).
``k0..kern`` the per-entity algorithm of :mod:`query_api.funnels.kernel`: one CTE per step, each a few
           whole-array passes (``arrayFill``, ``arrayShiftRight``, ``arrayMap`` over aligned arrays), so time
           grows linearly with steps and events; then the chosen path (rule 8) by predecessor links.  ``kern``
           keeps only the path: times, sessions, breakdown value.
final      per step (and breakdown group, by GROUPING SETS): count, exact lower/upper medians and sums of
           the times from the previous and the first step, and a page of the sorted entity refs.

:func:`counts_query` answers a funnel chart (counts only; ordered, users or sessions, no breakdown) with the
same ``anon``/``ev``/``ent`` stages, ``ent`` without the session column, and a levels-only kernel: per step
one forward fill of path start times (:func:`_level_steps`), no path, times or refs.

Reading without ``FINAL`` (rule 1, exact): a redelivered event is the same event (same id, same content; at
most its receive time differs), and every copy lands in the same session and person, so duplicates are
dropped inside each per-session/per-entity array (:func:`_sorted_events`), keeping the first delivery in the
total order.  This costs one hash pass per array and, unlike ``FINAL``, does not depend on how many parts
are not merged yet, and does not block PREWHERE.

ClickHouse properties that shape the text: a lambda that captures an array copies it for every element
(quadratic on long histories), so no lambda here captures one; an alias used twice in a SELECT is inlined
twice, so each step is its own CTE; ``groupArray`` of a tuple is several times slower than one
``groupArray`` per column (zipped afterwards); and a filter on the kernel's output would be pushed down
through the step CTEs (planning time then explodes with steps), so there is none.  Modes finished in Python
read :func:`entity_events_query`.

Everything user-supplied is a bound parameter; only structure (step count, column names checked by the
spec) is written into the text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from query_api.funnels.events import SEGMENT_MAX_MS
from query_api.funnels.spec import BREAKDOWN_COLUMNS, FunnelSpec
from schemas.fields import FIELDS_BY_NAME, Kind
from schemas.matchers import Matcher, to_clickhouse

__all__ = [
    "ORDER_SQL",
    "SETTINGS",
    "FunnelQuery",
    "aggregate_query",
    "counts_apply",
    "counts_query",
    "entity_events_query",
]

_NO_WINDOW = 1 << 62
# The rules' total order of an ``events`` row as one ClickHouse tuple (query_api.funnels.events decides it):
# the identity pass of funnels and of the person-based analyses takes the first event carrying both ids by it.
ORDER_SQL = "(timestamp, ifNull(event_sequence, 0), received_at, cityHash64(event_id), event_id)"
# The identity mapping as one scalar (``amap``: anonymous ids, sorted, and their user ids, aligned), so that
# the identity pass runs once: two scalar subqueries over ``anon`` ran it twice, before the main scan.
_ANON_MAP = (
    "(SELECT (arrayMap(p -> p.1, m), arrayMap(p -> p.2, m)) "
    "FROM (SELECT arraySort(groupArray((anon_id, uid))) AS m FROM anon)) AS amap"
)
_ANON_UID = "transform(e.user_anonymous_id, amap.1, amap.2, '')"
_ALL_BUT_START = (1 << 64) - 2  # the step mask of an event that may not start a path: every bit but step 1's
_PATH = "CAST([], 'Array(UInt32)')"
# The per-entity event tuple: 1 ts, 2 sequence, 3 receive time, 4 the event id's cityHash64 (the total
# order's last key, see query_api.funnels.events), 5 step mask, 6 exclusion mask, 7 may start, 8 session id,
# 9 breakdown value, 10 segment, 11 position in segment.
_ENTITY_TUPLE = ("ts", "seq", "rcv", "eh", "smask", "xmask", "can_start", "session_id", "bd", "seg", "spos")
# The SQL kernel's tuple when no segment is needed (ordered users): the total order's four columns, the step
# mask with step 1 cleared where no path may start, the session, and the exclusion mask and breakdown value
# only when the spec has them.  Every array aggregated per entity costs (a groupArray, then a permutation by
# the sort), so none is carried for nothing.
_LEAN_TUPLE = ("ts", "seq", "rcv", "eh", "mstart", "session_id")


def _lean_tuple(spec: FunnelSpec, *, counts_only: bool = False) -> tuple[str, ...]:
    """The lean tuple for ``spec``; ``counts_only`` (:func:`counts_query`): without the session (no refs)."""
    base = tuple(c for c in _LEAN_TUPLE if c != "session_id") if counts_only else _LEAN_TUPLE
    return base + (("xmask",) if spec.exclusions else ()) + (("bd",) if spec.breakdown is not None else ())


def _sorted_events(columns: tuple[str, ...], constants: frozenset[str] = frozenset()) -> str:
    """A group's events as one array of tuples in the total order (the first four columns), without later
    copies of an event (rule 1).

    One ``groupArray`` per column, zipped after aggregation: ``groupArray`` of a tuple stores every value
    through the generic (serializing) implementation, several times slower than numeric/String arrays.
    Tuples compare element by element, so the plain sort is the total order.  Copies of one event share
    its content and differ at most in receive time, so in that order the first copy is the first delivery;
    ``arrayEnumerateUniq`` numbers the occurrences of each (id hash, timestamp) (elements 4 and 1): numbers,
    not the id strings, which cost most of the grouping.  Two different events of one entity with the same
    timestamp and the same 64-bit id hash would count once (and only such a pair could be ordered
    otherwise than by the id that follows the hash in the rules' order).  ``constants`` (columns with one
    value for the whole query) become constant arrays instead of aggregates."""
    n = f"groupArray({columns[0]})"
    arrays = (f"arrayWithConstant(length({n}), {c})" if c in constants else f"groupArray({c})" for c in columns)
    zipped = f"arraySort(arrayZip({', '.join(arrays)}))"
    return f"arrayFilter((x, u) -> u = 1, {zipped}, arrayEnumerateUniq({zipped}.4, {zipped}.1))"


# Two-level aggregation from a few thousand entities on: the per-entity arrays leave the GROUP BY in buckets
# that the kernel stages process on every thread (one stream otherwise: a 30-step funnel ran ~2x slower).
SETTINGS: dict[str, Any] = {"group_by_two_level_threshold": 2000, "group_by_two_level_threshold_bytes": 1_000_000}


@dataclass(frozen=True, slots=True)
class FunnelQuery:
    sql: str
    params: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=lambda: dict(SETTINGS))


def _bits(exprs: list[str], bits: list[int]) -> str:
    return " + ".join(f"if({e}, toUInt64({b}), toUInt64(0))" for e, b in zip(exprs, bits, strict=True)) or "toUInt64(0)"


def _breakdown(spec: FunnelSpec, params: dict[str, Any]) -> str:
    b = spec.breakdown
    if b is None:
        return "''"
    key = b.metadata_key
    if key is not None:
        params["bd_key"] = key
        return "e.metadata[{bd_key:String}]"
    if b.property == "event_type":
        return "toString(e.event_type)"
    kind = FIELDS_BY_NAME[BREAKDOWN_COLUMNS[b.property]].kind
    return f"ifNull(toString(e.{b.property}), '')" if kind is Kind.INT else f"e.{b.property}"


def _tenant_range(t: str) -> str:
    return (
        f"{t}org_id = {{org:UUID}} AND {t}project_id = {{project:UUID}} "
        f"AND {t}timestamp >= fromUnixTimestamp64Milli({{scan_from:Int64}}, 'UTC') "
        f"AND {t}timestamp < fromUnixTimestamp64Milli({{scan_to:Int64}}, 'UTC')"
    )


def _needs_segments(spec: FunnelSpec) -> bool:
    return spec.count_by == "sessions" or spec.mode == "strict"


def _events_cte(spec: FunnelSpec, org_id: str, project_id: str, *, any_order: bool) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "org": org_id,
        "project": project_id,
        "scan_from": spec.scan_from_ms,
        "scan_to": spec.scan_to_ms,
        "start_before": spec.start_before_ms,
    }
    # One condition per distinct matcher (funnels often repeat a step, e.g. back to the cart): each is
    # evaluated once per row, in PREWHERE and in the step mask, and sets the bits of all its steps.
    step_conds: list[str] = []
    step_bits: list[int] = []
    seen: dict[Matcher, int] = {}  # matcher -> its index in step_conds
    for i, step in enumerate(spec.steps, start=1):
        if step.matcher in seen:
            step_bits[seen[step.matcher]] |= 1 << (i - 1)
            continue
        cond, p = to_clickhouse(step.matcher, f"s{i}")
        seen[step.matcher] = len(step_conds)
        step_conds.append(f"({cond})")
        step_bits.append(1 << (i - 1))
        params.update(p)
    excl_conds: list[tuple[int, str]] = []
    for i, ex in enumerate(spec.exclusions, start=1):
        cond, p = to_clickhouse(ex.matcher, f"x{i}")
        excl_conds.append((ex.after_step, f"({cond})"))
        params.update(p)
    # Several exclusions may share a gap: bit g-1 is their OR.
    gaps = sorted({g for g, _ in excl_conds})
    xmask = " + ".join(
        f"if({' OR '.join(c for g2, c in excl_conds if g2 == g)}, toUInt64({1 << (g - 1)}), toUInt64(0))" for g in gaps
    ) or "toUInt64(0)"  # fmt: skip
    cohort = "1"
    if spec.cohort is not None and spec.cohort.subquery is not None:
        cohort = f"puid IN ({spec.cohort.subquery.sql})"
        params.update(dict(spec.cohort.subquery.params))
    elif spec.cohort is not None:
        params["cohort_ids"] = sorted(spec.cohort.user_ids)
        cohort = "has({cohort_ids:Array(String)}, puid)"
    # PREWHERE reads the matchers' columns first and the rest only for the events that can matter: events
    # matching a step or an exclusion, unless segments are needed (they are cut on every event).
    relevant = step_conds if any_order else step_conds + [c for _, c in excl_conds]
    keep = "" if _needs_segments(spec) else f"({' OR '.join(relevant)}) AND "
    # No FINAL: duplicates are dropped per entity array (_sorted_events); the identity pass reads only
    # events carrying both ids (usually few; a duplicate copy names the same user).  The mapping is applied
    # by ``transform`` over two constant arrays (one scalar subquery) rather than a LEFT JOIN: the join cost
    # ~7-10% of a 5-step funnel's server CPU over 10M events even with an empty mapping, and ``if`` only
    # evaluates the lookup for events without a user id.
    sql = f"""
anon AS (
    SELECT user_anonymous_id AS anon_id,
           argMin(user_id, {ORDER_SQL}) AS uid
    FROM events
    PREWHERE user_anonymous_id != '' AND user_id != '' AND {_tenant_range("")}
    GROUP BY user_anonymous_id
),
{_ANON_MAP},
ev AS (
    SELECT e.session_id AS session_id,
           toUnixTimestamp64Milli(e.timestamp) AS ts,
           ifNull(e.event_sequence, 0) AS seq,
           toUnixTimestamp64Milli(e.received_at) AS rcv,
           cityHash64(e.event_id) AS eh,
           {_bits(step_conds, step_bits)} AS smask,
           {xmask} AS xmask,
           toUInt8(ts < {{start_before:Int64}}) AS can_start,
           if(can_start = 1, smask, bitAnd(smask, toUInt64({_ALL_BUT_START}))) AS mstart,
           {_breakdown(spec, params)} AS bd_raw,
           if(bd_raw = '', '(none)', bd_raw) AS bd,
           if(e.user_id != '', e.user_id, if(e.user_anonymous_id != '', {_ANON_UID}, '')) AS puid,
           multiIf(puid != '', 1, e.user_anonymous_id != '', 2, 3) AS pkind,
           multiIf(pkind = 1, puid, pkind = 2, e.user_anonymous_id, e.session_id) AS pkey,
           concat(['user:', 'anonymous:', 'session:'][pkind], pkey) AS person,
           toUInt8({cohort}) AS in_cohort
    FROM events AS e
    PREWHERE {keep}{_tenant_range("e.")}
)"""
    return sql, params


def _entities_cte(spec: FunnelSpec, *, any_order: bool, lean: bool = False, counts_only: bool = False) -> str:
    """``ent``: per counted entity its events (``evs``) in the total order, without later copies.  ``lean``
    (the SQL kernel, no segments): only the columns the kernel reads, see :data:`_LEAN_TUPLE`."""
    if lean and not _needs_segments(spec):
        lean_columns = _lean_tuple(spec, counts_only=counts_only)
        return f"""
ent AS (
    SELECT concat(['user:', 'anonymous:', 'session:'][pkind], pkey) AS entity,
           {_sorted_events(lean_columns)} AS evs
    FROM ev WHERE in_cohort = 1 GROUP BY pkind, pkey
)"""
    if not _needs_segments(spec):
        # grouped by (kind, id): the entity text is built once per entity, not per event
        zero, none = "toUInt32(0)", "'(none)'"
        columns: tuple[str, ...] = (*_ENTITY_TUPLE[:-3], none if spec.breakdown is None else "bd", zero, zero)
        if not spec.exclusions:
            columns = tuple(zero if c == "xmask" else c for c in columns)
        return f"""
ent AS (
    SELECT concat(['user:', 'anonymous:', 'session:'][pkind], pkey) AS entity,
           {_sorted_events(columns, frozenset({zero, none}))} AS evs
    FROM ev WHERE in_cohort = 1 GROUP BY pkind, pkey
)"""
    entity = "concat('session:', session_id, '#', toString(seg))" if spec.count_by == "sessions" else "person"
    if spec.count_by == "totals":  # strict totals: any event of the session may end an attempt
        keep = "x.10 = 1"
    elif any_order:
        keep = "x.10 = 1 AND x.5 != 0"
    else:
        keep = "x.10 = 1 AND (x.5 != 0 OR x.6 != 0)"
    session_columns = ("ts", "seq", "rcv", "eh", "smask", "xmask", "can_start", "bd", "person", "in_cohort")
    return f"""
sess AS (
    SELECT session_id, {_sorted_events(session_columns)} AS sevs
    FROM ev GROUP BY session_id
),
segd AS (
    SELECT session_id, sevs,
           sevs.1 AS st,
           arrayFold((acc, t, i) -> if(i = 1 OR t - acc.2 > {{timeout:Int64}} OR t - acc.1 > {SEGMENT_MAX_MS},
                                       (t, t, arrayPushBack(acc.3, i)), (acc.1, t, acc.3)),
                     st, arrayEnumerate(st), (toInt64(0), toInt64(0), {_PATH})).3 AS starts,
           arrayMap(i -> toUInt32(arrayCount(b -> b <= i, starts)), arrayEnumerate(st)) AS segno,
           arrayMap((i, sg) -> toUInt32(i - starts[sg]), arrayEnumerate(st), segno) AS segpos
    FROM sess
),
erows AS (
    SELECT session_id, x.1 AS ts, x.2 AS seq, x.3 AS rcv, x.4 AS eh, x.5 AS smask, x.6 AS xmask,
           x.7 AS can_start, x.8 AS bd, x.9 AS person, sg AS seg, sp AS spos
    FROM segd ARRAY JOIN sevs AS x, segno AS sg, segpos AS sp
    WHERE {keep}
),
ent AS (
    SELECT {entity} AS entity, arraySort(arrayZip({", ".join(f"groupArray({c})" for c in _ENTITY_TUPLE)})) AS evs
    FROM erows GROUP BY entity
)"""


# --- kernels: see query_api/funnels/kernel.py (ordered, strict) and reference.totals_paths (totals) -------
# No lambda captures an array (ClickHouse would copy the captured array for every element: quadratic on
# long histories); neighbours come from arrayShiftRight, "last candidate so far" from arrayFill.
# A candidate is encoded as start * 2^32 + position (0: none): the larger of two is the later start, then
# the later event.  Each step is its own CTE so that no step's expression is inlined into another's.
# Output per entity reaching step 1: ``times`` and ``sessions`` of its chosen path's steps, and its breakdown
# ``value`` (rule 8).

_HI = 4294967296  # 2^32


def _shift(a: str) -> str:
    return f"arrayShiftRight({a}, 1)"


def _ordered_steps(spec: FunnelSpec) -> list[str]:
    """Per step k: ``V{k}`` candidates, ``ST{k}`` their start times; ``FV{k}`` the last step-(k-1)
    candidate so far (the predecessor of a step-k event is FV{k} one position earlier)."""
    gaps = {x.after_step for x in spec.exclusions}
    stages = [f"arrayMap((m, i) -> if(bitTest(m, 0), {_HI} * i + i, 0), M, I) AS V1, T AS ST1"]
    for k in range(2, len(spec.steps) + 1):
        items = [
            f"arrayFill(v -> v > 0, V{k - 1}) AS FV{k}",
            f"arrayFill((s, v) -> v > 0, ST{k - 1}, V{k - 1}) AS FS{k}",
        ]
        args, arrays = ["m", "i", "t", "c", "cs"], ["M", "I", "T", _shift(f"FV{k}"), _shift(f"FS{k}")]
        conds = [f"bitTest(m, {k - 1})", "c > 0", "t - cs <= {W:Int64}"]
        if spec.steps[k - 1].window_ms is not None:
            items.append(f"arrayFill((t, v) -> v > 0, T, V{k - 1}) AS FO{k}")
            args.append("co")
            arrays.append(_shift(f"FO{k}"))
            conds.append(f"t - co <= {{w{k}:Int64}}")
        if k - 1 in gaps:  # the candidate must not be older than the last exclusion between k-1 and k
            items.append(f"arrayFill(v -> v > 0, arrayMap((x, i) -> if(bitTest(x, {k - 2}), i, 0), X, I)) AS E{k}")
            args.append("e")
            arrays.append(_shift(f"E{k}"))
            conds.append(f"c % {_HI} >= e")
        items.append(f"arrayMap(({', '.join(args)}) -> if({' AND '.join(conds)}, c - c % {_HI} + i, 0), "
                     f"{', '.join(arrays)}) AS V{k}")  # fmt: skip
        items.append(f"{_shift(f'FS{k}')} AS ST{k}")
        stages.append(", ".join(items))
    return stages


def _strict_steps(spec: FunnelSpec) -> list[str]:
    """Strict: the arrays re-sorted into segment order (session, segment, position), where a step's only
    possible predecessor is the previous element (``OK``: it is the immediately preceding segment event).
    ``I`` keeps the time-order position (for "reached first" and "latest start"); prefix counts of
    exclusions in time order find another session's excluded event in between (users)."""
    gaps = sorted({x.after_step for x in spec.exclusions})
    key = "(s, g, p)"
    first = [f"arrayCumSum(arrayMap(x -> toUInt32(bitTest(x, {g - 1})), X)) AS CX{g}" for g in gaps]
    resort = [
        f"arraySort((v, s, g, p) -> {key}, {a}, S, G, P) AS {a}{a}" for a in ("T", "M", "X", "S", "B", "G", "P", "I")
    ] + [f"arraySort((v, s, g, p) -> {key}, CX{g}, S, G, P) AS SCX{g}" for g in gaps]
    ok = ("arrayMap((s, g, p, s0, g0, p0) -> s = s0 AND g = g0 AND p = p0 + 1, SS, GG, PP, "
          f"{_shift('SS')}, {_shift('GG')}, {_shift('PP')}) AS OK")  # fmt: skip
    stages = [", ".join([*first, "1 AS _s"]), ", ".join([*resort, ok]),
              f"arrayMap((m, i) -> if(bitTest(m, 0), {_HI} * i + i, 0), MM, II) AS V1, TT AS ST1"]  # fmt: skip
    for k in range(2, len(spec.steps) + 1):
        args = ["m", "i", "t", "ok", "c", "cs"]
        arrays = ["MM", "II", "TT", "OK", _shift(f"V{k - 1}"), _shift(f"ST{k - 1}")]
        conds = [f"bitTest(m, {k - 1})", "ok", "c > 0", "t - cs <= {W:Int64}"]
        if spec.steps[k - 1].window_ms is not None:
            args.append("pt")
            arrays.append(_shift("TT"))
            conds.append(f"t - pt <= {{w{k}:Int64}}")
        if k - 1 in gaps:  # exclusions strictly between (time order): before x minus up to the predecessor
            args += ["cx", "x", "cp"]
            arrays += [f"SCX{k - 1}", "XX", _shift(f"SCX{k - 1}")]
            conds.append(f"cx - toUInt32(bitTest(x, {k - 2})) = cp")
        stages.append(f"arrayMap(({', '.join(args)}) -> if({' AND '.join(conds)}, c - c % {_HI} + i, 0), "
                      f"{', '.join(arrays)}) AS V{k}, {_shift(f'ST{k - 1}')} AS ST{k}")  # fmt: skip
    return stages


def _path_stages(spec: FunnelSpec) -> list[str]:
    """The chosen path: the first event (time order) of the furthest level, then predecessors back to
    step 1; ``Q{k}`` is the position of the path's step-k event in the arrays the steps used."""
    n, strict = len(spec.steps), spec.mode == "strict"
    reach = [f"arrayExists(v -> v > 0, V{k}) AS r{k}" for k in range(1, n + 1)]
    reach.append(f"({' + '.join(f'r{k}' for k in range(1, n + 1))}) AS L")
    if strict:  # first in time order: the smallest own time position among the level's candidates
        firsts = [f"arrayMin(arrayMap(v -> if(v > 0, v % {_HI}, {_HI}), V{k})) AS e{k}" for k in range(1, n + 1)]
        reach += firsts
        last = f"multiIf({', '.join(f'L = {k}, arrayFirstIndex(v -> v % {_HI} = e{k} AND v > 0, V{k})' for k in range(1, n + 1))}, 0)"  # noqa: E501
    else:
        last = f"multiIf({', '.join(f'L = {k}, arrayFirstIndex(v -> v > 0, V{k})' for k in range(1, n + 1))}, 0)"
    back: list[str] = []
    for k in range(n, 0, -1):
        nxt = f"Q{k + 1}" if k < n else "0"
        prev = f"{nxt} - 1" if strict else f"FV{k + 1}[{nxt} - 1] % {_HI}" if k < n else "0"
        back.append(f"toUInt32(if({k} > L, 0, if({k} = L, QL, {prev}))) AS Q{k}")
    t, se, b = ("TT", "SS", "BB") if strict else ("T", "S", "B")

    def along(a: str) -> str:
        return f"[{', '.join(f'{a}[Q{k}]' for k in range(1, n + 1))}]"

    out = [f"arraySlice({along(t)}, 1, L) AS times", f"arraySlice({along(se)}, 1, L) AS sessions"]
    bd = spec.breakdown
    if bd is None:
        out.append("'(none)' AS value")
    elif bd.attribution == "first_step":
        out.append(f"{b}[Q1] AS value")
    elif bd.attribution == "last_step":
        out.append(f"{along(b)}[L] AS value")
    else:
        out.append(f"if(L >= {bd.step}, {b}[Q{bd.step}], '(none)') AS value")
    # separate stages: an alias used in the same SELECT is inlined, and Q{k} uses Q{k+1}
    return [", ".join(reach), f"toUInt32({last}) AS QL", ", ".join(back), ", ".join(out)]


def _kernel_arrays(spec: FunnelSpec, *, counts_only: bool = False) -> str:
    """The select list of ``k0``: per entity the aligned arrays the kernels read."""
    if _needs_segments(spec):
        return f"""entity,
           evs.1 AS T,
           arrayMap((m, c) -> if(c = 1, m, bitAnd(m, toUInt64({_ALL_BUT_START}))), evs.5, evs.7) AS M,
           evs.6 AS X,
           evs.8 AS S,
           evs.9 AS B,
           evs.10 AS G,
           evs.11 AS P,
           arrayEnumerate(evs) AS I"""
    # the lean tuple
    at = {c: i for i, c in enumerate(_lean_tuple(spec, counts_only=counts_only), start=1)}
    x = f"evs.{at['xmask']}" if "xmask" in at else "arrayWithConstant(length(evs), toUInt64(0))"
    b = f"evs.{at['bd']}" if "bd" in at else "arrayWithConstant(length(evs), '(none)')"
    s = "arrayWithConstant(length(evs), '')" if counts_only else f"evs.{at['session_id']}"
    return f"""entity,
           evs.1 AS T,
           evs.{at["mstart"]} AS M,
           {x} AS X,
           {s} AS S,
           {b} AS B,
           arrayEnumerate(evs) AS I"""


def _kernel(spec: FunnelSpec) -> str:
    """CTEs ``k0 .. kern``: per entity its arrays, then its chosen path (users, sessions)."""
    arrays = _kernel_arrays(spec)
    stages = (_strict_steps(spec) if spec.mode == "strict" else _ordered_steps(spec)) + _path_stages(spec)
    ctes = [f"k0 AS (SELECT {arrays} FROM ent)"]
    for i, items in enumerate(stages, start=1):
        ctes.append(f"k{i} AS (SELECT *, {items} FROM k{i - 1})")
    # Only the path leaves the kernel (the stages' arrays, several per step, would otherwise be copied by the
    # ARRAY JOIN downstream).  No filter here: pushed down through the stages, a filter splits their
    # expressions and planning time explodes with steps; an empty path simply yields no step rows.
    ctes.append(f"kern AS (SELECT entity, times, sessions, value FROM k{len(stages)})")
    return ",\n".join(ctes)


def _window_params(spec: FunnelSpec, params: dict[str, Any]) -> None:
    params["W"] = spec.window_ms
    params["w"] = [_NO_WINDOW if s.window_ms is None else s.window_ms for s in spec.steps]
    for k, step in enumerate(spec.steps, start=1):
        if step.window_ms is not None:
            params[f"w{k}"] = step.window_ms
    params["timeout"] = spec.session_timeout_ms


def aggregate_query(spec: FunnelSpec, org_id: str, project_id: str) -> FunnelQuery:
    """Rows ``(overall, value, k, count, prev low/high/sum, first low/high/sum, converted, dropped_next)``:
    per step k and per breakdown group (``overall = 0``) and overall (``overall = 1``).  ``dropped_next``
    holds the refs of units whose furthest step is k (they dropped at k + 1)."""
    events, params = _events_cte(spec, org_id, project_id, any_order=False)
    _window_params(spec, params)
    params["off"] = spec.entities_offset
    params["lim"] = spec.entities_limit
    n = len(spec.steps)
    group = "GROUP BY GROUPING SETS ((value, k), (k))" if spec.breakdown is not None else "GROUP BY value, k"
    overall = "grouping(value) = 1" if spec.breakdown is not None else "1"

    def refs(cond: str | None) -> str:
        """A page of the sorted refs (entity, session) of the group's rows (where ``cond``).  A group has one
        row per entity and step, so the refs are distinct: only the first ``off + lim`` are kept, sorted."""
        top = max(1, spec.entities_offset + spec.entities_limit)
        agg = (
            f"groupArraySortedIf({top})((entity, session), {cond})"
            if cond
            else f"groupArraySorted({top})((entity, session))"
        )
        return f"arraySlice({agg}, {{off:UInt32}} + 1, {{lim:UInt32}})"

    sql = f"""WITH {events},{_entities_cte(spec, any_order=False, lean=True)},
{_kernel(spec)},
paths AS (SELECT entity, times, sessions, value FROM kern)
SELECT toUInt8({overall}) AS overall, value, k, count() AS units,
       quantileExactLow(0.5)(d_prev), quantileExactHigh(0.5)(d_prev), sum(d_prev),
       quantileExactLow(0.5)(d_first), quantileExactHigh(0.5)(d_first), sum(d_first),
       {refs(None)} AS converted,
       {refs(f"k = length(times) AND k < {n}")} AS dropped_next
FROM (
    SELECT entity, value, k, times, sessions[k] AS session,
           times[k] - times[if(k > 1, k - 1, 1)] AS d_prev, times[k] - times[1] AS d_first
    FROM paths ARRAY JOIN arrayEnumerate(times) AS k
)
{group}
ORDER BY overall, value, k"""
    return FunnelQuery(sql, params)


def _level_steps(spec: FunnelSpec) -> list[str]:
    """Ordered mode, levels only (:func:`counts_query`): ``C{k}`` holds, at each event that ends a valid path
    as step k, the path's latest possible start as ``start time - scan_from + 1`` (0: none).  The kernel's
    fact (:mod:`query_api.funnels.kernel`) makes the last defined candidate before an event its best
    predecessor, so a step needs only that candidate's start (``F{k}``), and its own time (``O{k}``, per-step
    window) or position (``P{k}``, exclusions): one forward fill each, no path encoding."""
    gaps = {x.after_step for x in spec.exclusions}
    rel = "t - {scan_from:Int64} + 1"
    stages = [f"arrayMap((m, t) -> if(bitTest(m, 0), {rel}, 0), M, T) AS C1"]
    for k in range(2, len(spec.steps) + 1):
        items = [f"{_shift(f'arrayFill(v -> v > 0, C{k - 1})')} AS F{k}"]
        args, arrays = ["m", "t", "c"], ["M", "T", f"F{k}"]
        conds = [f"bitTest(m, {k - 1})", "c > 0", f"{rel} - c <= {{W:Int64}}"]
        if spec.steps[k - 1].window_ms is not None:
            items.append(f"{_shift(f'arrayFill((t, v) -> v > 0, T, C{k - 1})')} AS O{k}")
            args.append("o")
            arrays.append(f"O{k}")
            conds.append(f"t - o <= {{w{k}:Int64}}")
        if k - 1 in gaps:  # the candidate must not be older than the last exclusion between k-1 and k
            items.append(f"{_shift(f'arrayFill((i, v) -> v > 0, I, C{k - 1})')} AS P{k}")
            excluded = f"arrayMap((x, i) -> if(bitTest(x, {k - 2}), i, 0), X, I)"
            items.append(f"{_shift(f'arrayFill(v -> v > 0, {excluded})')} AS E{k}")
            args += ["p", "e"]
            arrays += [f"P{k}", f"E{k}"]
            conds.append("p >= e")
        items.append(f"arrayMap(({', '.join(args)}) -> if({' AND '.join(conds)}, c, 0), {', '.join(arrays)}) AS C{k}")
        stages.append(", ".join(items))
    return stages


def counts_apply(spec: FunnelSpec) -> bool:
    """Whether :func:`counts_query` answers ``spec``: ordered, by users or sessions, no breakdown."""
    return spec.mode == "ordered" and spec.count_by != "totals" and spec.breakdown is None


def counts_query(spec: FunnelSpec, org_id: str, project_id: str) -> FunnelQuery:
    """Rows ``(level, units)``: how many counted units reach exactly ``level`` steps (0 included), for an
    ordered funnel without breakdown counted by users or sessions.  The per-step counts of
    :func:`aggregate_query` (count at step k = units with level >= k) without the chosen paths, their times
    and refs: about half the server CPU of the full answer, for callers that ask for counts and rates only
    (a funnel chart).  Same scan, identity, dedup, order, segments and cohort as :func:`aggregate_query`."""
    if not counts_apply(spec):
        raise ValueError("counts_query: ordered funnels by users or sessions without breakdown only")
    events, params = _events_cte(spec, org_id, project_id, any_order=False)
    _window_params(spec, params)
    n = len(spec.steps)
    ctes = [f"k0 AS (SELECT {_kernel_arrays(spec, counts_only=True)} FROM ent)"]
    for i, items in enumerate(_level_steps(spec), start=1):
        ctes.append(f"k{i} AS (SELECT *, {items} FROM k{i - 1})")
    # reach k: some C{k} defined (arrayMax needs no lambda); no filter on the output (see _kernel)
    level = " + ".join(f"toUInt32(arrayMax(C{k}) > 0)" for k in range(1, n + 1))
    kernel = ",\n".join(ctes)
    sql = f"""WITH {events},{_entities_cte(spec, any_order=False, lean=True, counts_only=True)},
{kernel},
lv AS (SELECT {level} AS level FROM k{n})
SELECT level, count() AS units FROM lv GROUP BY level ORDER BY level"""
    return FunnelQuery(sql, params)


def entity_events_query(spec: FunnelSpec, org_id: str, project_id: str) -> FunnelQuery:
    """Per counted entity, its events in the total order (tuples as ``_ENTITY_TUPLE``): compact input for
    the modes finished in Python (any order, totals).  Kept: step-matching events (any order); events
    matching a step or an exclusion (ordered totals); every event (strict totals: any event of the
    session may end an attempt)."""
    events, params = _events_cte(spec, org_id, project_id, any_order=spec.mode == "any_order")
    _window_params(spec, params)
    sql = f"WITH {events},{_entities_cte(spec, any_order=spec.mode == 'any_order')}\nSELECT entity, evs FROM ent"
    return FunnelQuery(sql, params)
