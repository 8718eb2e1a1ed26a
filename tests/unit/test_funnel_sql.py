"""The funnel SQL's shape where speed or safety depends on it (pure: text only, no server).

Exactness is checked against the reference on real ClickHouse (tests/integration/test_funnel_clickhouse.py);
these pin what makes the query fast and safe: no ``FINAL``, PREWHERE on the step matchers when no segment is
needed, a tenant condition on every table read, a bounded refs aggregate, and a kernel output without a
filter (a filter pushed down through the step CTEs made planning time explode with steps).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from query_api.funnels.spec import FunnelSpec, parse_funnel_spec
from query_api.funnels.sql import SETTINGS, aggregate_query, entity_events_query
from query_api.tenant_scope import check_scoped

NOW = datetime.now(UTC)
MODES: list[dict[str, Any]] = [
    {},
    {"count_by": "sessions"},
    {"mode": "strict"},
    {"count_by": "totals"},
    {"mode": "any_order"},
]


def _spec(**extra: Any) -> FunnelSpec:
    base = {"steps": [{"event_name": "a"}, {"event_name": "b"}, {"event_name": "c"}],
            "date_from": NOW - timedelta(days=30), "date_to": NOW}  # fmt: skip
    return parse_funnel_spec(base | extra)


def _ev_prewhere(sql: str) -> str:
    """The PREWHERE of the ``ev`` stage (the per-event scan)."""
    ev = sql[sql.index("\nev AS (") :]
    return ev[ev.index("PREWHERE") : ev.index("\n)")]


@pytest.mark.parametrize("extra", MODES)
def test_every_table_read_is_tenant_scoped_and_final_free(extra: dict[str, Any]) -> None:
    spec = _spec(**extra)
    for query in (aggregate_query(spec, "o", "p"), entity_events_query(spec, "o", "p")):
        check_scoped(query.sql)  # raises UnscopedQuery otherwise
        assert not re.search(r"\bFINAL\b", query.sql)
        assert query.settings == SETTINGS


def test_prewhere_keeps_only_step_and_exclusion_events_when_no_segment_is_needed() -> None:
    spec = _spec(exclusions=[{"matcher": {"event_type": "error"}, "after_step": 1}])
    pre = _ev_prewhere(aggregate_query(spec, "o", "p").sql)
    for name in ("s1_name", "s2_name", "s3_name", "x1_type"):
        assert f"{{{name}:String}}" in pre
    assert pre.index("s1_name") < pre.index("org_id")  # the matchers' columns are read first
    # any order ignores exclusions: only step events are kept
    pre = _ev_prewhere(entity_events_query(_spec(mode="any_order"), "o", "p").sql)
    assert "{s1_name:String}" in pre


@pytest.mark.parametrize("extra", [{"count_by": "sessions"}, {"mode": "strict"}])
def test_segments_see_every_event(extra: dict[str, Any]) -> None:
    """Segments and strict adjacency are computed over every event of a session: no step filter."""
    pre = _ev_prewhere(aggregate_query(_spec(**extra), "o", "p").sql)
    assert "s1_name" not in pre and "org_id = {org:UUID}" in pre


@pytest.mark.parametrize(("offset", "limit", "top"), [(0, 100, 100), (5, 3, 8), (0, 0, 1)])
def test_entity_refs_keep_only_the_page(offset: int, limit: int, top: int) -> None:
    sql = aggregate_query(_spec(entities_offset=offset, entities_limit=limit), "o", "p").sql
    assert sql.count(f"groupArraySorted({top})") == 1 and sql.count(f"groupArraySortedIf({top})") == 1
    assert "groupUniqArray" not in sql


@pytest.mark.parametrize("n_steps", [2, 30])
def test_kernel_output_is_the_path_only_and_unfiltered(n_steps: int) -> None:
    steps = [{"event_name": f"s{i}"} for i in range(n_steps)]
    sql = aggregate_query(_spec(steps=steps), "o", "p").sql
    kern = re.search(r"\nkern AS \((.*)\)", sql)
    assert kern is not None
    assert re.fullmatch(r"SELECT entity, times, sessions, value FROM k\d+", kern.group(1))


def _ev_cte(sql: str) -> str:
    """The ``ev`` stage (the per-event scan), up to the next CTE."""
    ev = sql[sql.index("\nev AS (") :]
    return ev[: ev.index("\n)")]


def test_a_repeated_matcher_is_evaluated_once_and_sets_all_its_steps() -> None:
    """Steps a, b, a, b, c: two conditions fewer per scanned row; a's condition sets bits 1 and 3 (mask 5),
    b's bits 2 and 4 (mask 10)."""
    steps = [{"event_name": n} for n in "abab"] + [{"event_name": "c"}]
    query = aggregate_query(_spec(steps=steps), "o", "p")
    ev = _ev_cte(query.sql)
    assert ev.count("{s1_name:String}") == 2 and ev.count("{s2_name:String}") == 2  # PREWHERE + step mask
    assert "s3_name" not in ev and "s4_name" not in ev and ev.count("{s5_name:String}") == 2
    assert "toUInt64(5)" in ev and "toUInt64(10)" in ev and "toUInt64(16)" in ev
    assert query.params["s1_name"] == "a" and query.params["s2_name"] == "b" and query.params["s5_name"] == "c"


@pytest.mark.parametrize("extra", MODES)
def test_identity_mapping_needs_no_join(extra: dict[str, Any]) -> None:
    spec = _spec(**extra)
    for query in (aggregate_query(spec, "o", "p"), entity_events_query(spec, "o", "p")):
        assert not re.search(r"(?<!ARRAY )\bJOIN\b", query.sql)
        assert "transform(e.user_anonymous_id" in _ev_cte(query.sql)


@pytest.mark.parametrize(
    ("extra", "arrays"),
    [
        ({}, 6),
        ({"exclusions": [{"matcher": {"event_type": "error"}, "after_step": 1}]}, 7),
        ({"breakdown": {"property": "metadata.plan"}}, 7),
    ],
)
def test_ordered_users_aggregate_only_the_columns_the_kernel_reads(extra: dict[str, Any], arrays: int) -> None:
    """Without segments the kernel's tuple is lean: the step mask already says where a path may start, and the
    exclusion mask and breakdown value travel only when the spec has them."""
    ent = re.search(r"\nent AS \((.*?)\n\)", aggregate_query(_spec(**extra), "o", "p").sql, re.S)
    assert ent is not None
    aggregated = set(re.findall(r"groupArray\((\w+)\)", ent.group(1)))
    assert len(aggregated) == arrays and "arrayWithConstant" not in ent.group(1)
    assert "can_start" not in aggregated and "mstart" in aggregated
