"""The pure parts of ``productgraph bench query``'s funnel timing: specs, counts, overhead, scaling verdict."""

from __future__ import annotations

from typing import Any

from productgraph.bench.query import (
    FUNNEL_STEP_SERIES,
    _funnel_counts,
    _native_funnel,
    _overhead,
    _percentiles,
    _scaling,
    funnel_spec,
)
from query_api.funnels.result import counts_from_levels
from query_api.funnels.spec import parse_funnel_spec


def test_funnel_specs_are_valid_and_cycle_through_the_shop() -> None:
    spec = parse_funnel_spec(funnel_spec(30, "2026-01-01T00:00:00Z", "2026-01-31T00:00:00Z"))
    assert len(spec.steps) == 30 and FUNNEL_STEP_SERIES == (5, 10, 20, 30)
    paths = [s.matcher.page_path for s in spec.steps]
    assert paths[:5] == ["/", "/products", "/products/42", "/cart", "/checkout/shipping"]
    assert paths[9] == "/" and all(s.matcher.event_type == "page.view" for s in spec.steps)


def test_funnel_counts_come_from_the_overall_rows() -> None:
    rows = [(1, "(none)", 2, 7), (0, "pro", 1, 99), (1, "(none)", 1, 10), (1, "(none)", 4, 1)]
    assert _funnel_counts(rows) == [10, 7, 0, 1]
    assert _funnel_counts([]) == []


def test_level_counts_accumulate_from_the_top() -> None:
    # units reaching exactly 0, 1, 2, 4 steps: step k counts the units of level >= k
    assert counts_from_levels([(0, 5), (1, 3), (2, 2), (4, 1)], 5) == [6, 3, 1, 1, 0]
    assert counts_from_levels([], 2) == [0, 0]


def test_native_reference_binds_every_step_and_the_range() -> None:
    spec = funnel_spec(3, "2026-01-01T00:00:00Z", "2026-01-31T00:00:00Z")
    sql, params = _native_funnel(spec, "o", "p")
    assert sql.count("windowFunnel") == 1 and "{t3:String}" in sql and "{start_before:Int64}" in sql
    assert (params["p1"], params["p3"], params["W"]) == ("/", "/products/42", parse_funnel_spec(spec).window_ms)


def test_percentiles_of_one_run() -> None:
    assert _percentiles([0.25]) == {"p50_ms": 250.0, "p95_ms": 250.0, "p99_ms": 250.0}


def test_overhead_is_relative_to_direct_sql() -> None:
    api = {"p50_ms": 110.0, "p95_ms": 150.0}
    sql = {"p50_ms": 100.0, "p95_ms": 150.0}
    assert _overhead(api, sql) == {"p50_pct": 10.0, "p95_pct": 0.0}


def _result(steps: int, api_ms: float, sql_ms: float, cpu: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"query": f"funnel series {steps} steps", "steps": steps,
                           "graphql": {"p50_ms": api_ms}, "direct_sql": {"p50_ms": sql_ms}}  # fmt: skip
    if cpu is not None:
        out["server_cpu_s"] = cpu
    return out


def test_scaling_verdict() -> None:
    other = {"query": "one session", "graphql": {"p50_ms": 1.0}, "direct_sql": {"p50_ms": 1.0}}
    linear = [other, _result(5, 100, 90, 0.5), _result(10, 180, 170, 0.9), _result(30, 590, 500, 2.9)]
    s = _scaling(linear)
    assert s["at_most_linear"] and s["cpu_at_most_linear"]
    assert [x["steps_ratio"] for x in s["series"]] == [1.0, 2.0, 6.0]
    assert [x["time_ratio_graphql"] for x in s["series"]] == [1.0, 1.8, 5.9]
    worse = [_result(5, 100, 90, 0.5), _result(10, 250, 170, 1.1)]  # 2.5x time and 2.2x CPU for 2x steps
    s = _scaling(worse)
    assert not s["at_most_linear"] and not s["cpu_at_most_linear"]
    assert "cpu_at_most_linear" not in _scaling([_result(5, 100, 90), _result(10, 150, 140)])
    assert _scaling([other]) == {}
