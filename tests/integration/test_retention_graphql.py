"""Retention over GraphQL on real ClickHouse + Postgres equals the Python reference and hand-computed numbers:
cross-day cohorts, an anonymous visitor merged into a user, session-only visitors, history before the range,
start/return matchers, future cells null, a saved cohort as filter, and the tenant boundary."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from query_api.cohorts import parse_definition, reference_members
from query_api.retention import RetentionResult, evaluate_reference, parse_retention_spec
from schemas.records import EventRecord
from tests.conftest import Servers
from tests.integration.test_cohorts_support import NOW, day, error_of, ev, gql, ok, store

pytest_plugins = ("tests.integration.test_cohorts_support",)  # the api and ch fixtures
pytestmark = pytest.mark.integration

QUERY = """query($p: ID!, $period: RetentionPeriod!, $n: Int, $from: DateTime, $s: JSON, $r: JSON, $c: ID) {
  retention(projectId: $p, period: $period, periods: $n, dateFrom: $from, startEvent: $s, returnEvent: $r,
            cohortId: $c) { period periods cohorts { start size cells { period count rate } } } }"""


def _plain(r: RetentionResult) -> dict[str, Any]:
    return {
        "period": r.period,
        "periods": r.periods,
        "cohorts": [
            {
                "start": c.start.isoformat(),
                "size": c.size,
                "cells": [{"period": x.period, "count": x.count, "rate": x.rate} for x in c.cells],
            }
            for c in r.cohorts
        ],
    }


def _triangle(answer: dict[str, Any]) -> list[tuple[int, list[int | None]]]:
    return [(c["size"], [x["count"] for x in c["cells"]]) for c in answer["cohorts"]]


def _dataset() -> list[EventRecord]:
    """Days relative to today (0); cohorts are days -4 .. 0."""
    return [
        ev(day(-4, 10), "s1", user="u1"), ev(day(-3, 10), "s1b", user="u1"), ev(day(-1, 10), "s1c", user="u1"),
        # anonymous late on day -4, identified after midnight: one person user:u2, cohort day -4 (cross-day)
        ev(day(-4, 23.5), "s2", anon="a1"), ev(day(-3, 1), "s2", user="u2", anon="a1"),
        ev(day(-2, 9), "s2b", user="u2"),
        ev(day(-3, 12), "s9"),  # session only: person session:s9, cohort day -3
        ev(day(-5, 10), "s3", user="u3"),  # before the range: not consulted
        ev(day(-3, 14), "s3b", user="u3"), ev(day(0, 0.01), "s3c", user="u3"),
        ev(day(-1, 8), "s4", user="u4"), ev(day(0, 0.02), "s4b", user="u4"),
    ]  # fmt: skip


async def test_triangle_equals_reference_and_hand_computed(
    api: httpx.AsyncClient, ch: Client, tenant: dict[str, str]
) -> None:
    events = _dataset()
    stored = await store(ch, tenant, [*events, events[0]])  # a redelivery counts once
    variables = {"p": tenant["project_id"], "period": "DAY", "n": 3, "from": day(-4, 0).isoformat()}
    got = (await ok(api, tenant["admin_token"], QUERY, variables))["retention"]
    spec = parse_retention_spec(period="DAY", periods=3, date_from=day(-4, 0), now=NOW)
    assert got == _plain(evaluate_reference(stored, spec))
    assert _triangle(got) == [
        (2, [2, 2, 1, 1]),  # day -4: u1 (days -3, -1), u2 (anonymous from day -4; days -3, -2)
        (2, [2, 0, 0, 1]),  # day -3: session:s9, u3 (its day -5 lies before the range; back today)
        (0, [0, 0, 0, None]),  # day -2: nobody new; its cell 3 is tomorrow
        (1, [1, 1, None, None]),  # day -1: u4, back today
        (0, [0, None, None, None]),  # today
    ]
    assert got["cohorts"][0]["cells"][2]["rate"] == 0.5
    assert got["cohorts"][0]["start"] == day(-4, 0).isoformat()

    # start = signup, return = login: period 0 counts a login earlier that same day
    more = await store(ch, tenant, [
        ev(day(-4, 9), "s5", user="u5", name="login"), ev(day(-4, 10), "s5", user="u5", name="signup"),
        ev(day(-2, 10), "s5b", user="u5", name="login"),
        ev(day(-3, 10), "s6", user="u6", name="signup"), ev(day(-2, 10), "s6", user="u6", name="signup"),
    ])  # fmt: skip
    variables |= {"s": {"event_name": "signup"}, "r": {"event_name": "login"}}
    got = (await ok(api, tenant["admin_token"], QUERY, variables))["retention"]
    spec = parse_retention_spec(
        period="DAY", periods=3, date_from=day(-4, 0), start_event={"event_name": "signup"},
        return_event={"event_name": "login"}, now=NOW,
    )  # fmt: skip
    assert got == _plain(evaluate_reference([*stored, *more], spec))
    assert _triangle(got)[:2] == [(1, [1, 0, 1, 0]), (1, [0, 0, 0, 0])]


async def test_weeks_months_defaults_and_errors(api: httpx.AsyncClient, ch: Client, tenant: dict[str, str]) -> None:
    stored = await store(ch, tenant, _dataset())
    for period, n in (("WEEK", 2), ("MONTH", 1)):
        got = await ok(api, tenant["admin_token"], QUERY, {"p": tenant["project_id"], "period": period, "n": n})
        spec = parse_retention_spec(period=period, periods=n, now=NOW)
        assert got["retention"] == _plain(evaluate_reference(stored, spec))
        assert (
            len(got["retention"]["cohorts"]) == n + 1 and got["retention"]["cohorts"][-1]["cells"][1]["count"] is None
        )
    too_many = await gql(api, tenant["admin_token"], QUERY, {"p": tenant["project_id"], "period": "MONTH", "n": 13})
    assert error_of(too_many) == "periods: must be an integer in 1..12"
    bad = await gql(api, tenant["admin_token"], QUERY, {"p": tenant["project_id"], "period": "DAY", "s": {"x": 1}})
    assert error_of(bad) == "startEvent.x: unknown matcher field"
    old_range = {"p": tenant["project_id"], "period": "DAY", "n": 30, "from": day(-405, 0).isoformat()}
    old = await gql(api, tenant["admin_token"], QUERY, old_range)
    assert "may span at most 400 days" in error_of(old)


async def test_saved_cohort_filter_and_tenant_boundary(
    api: httpx.AsyncClient, ch: Client, tenant: dict[str, str], servers: Servers
) -> None:
    from productgraph.admin import bootstrap_org

    stored = await store(ch, tenant, _dataset())
    definition = {"did_event": {}, "min": 2}  # persons with at least 2 events in the last 30 days
    save = 'mutation($p: ID!, $d: JSON!) { saveCohort(projectId: $p, name: "active", definition: $d) { id } }'
    saved = await ok(api, tenant["admin_token"], save, {"p": tenant["project_id"], "d": definition})
    cohort_id = saved["saveCohort"]["id"]
    variables = {"p": tenant["project_id"], "period": "DAY", "n": 3, "from": day(-4, 0).isoformat(), "c": cohort_id}
    got = (await ok(api, tenant["admin_token"], QUERY, variables))["retention"]
    members = reference_members(stored, parse_definition(definition), NOW)
    assert members == {"user:u1", "user:u2", "user:u3", "user:u4"}  # not session:s9 (one event)
    spec = parse_retention_spec(period="DAY", periods=3, date_from=day(-4, 0), now=NOW)
    assert got == _plain(evaluate_reference(stored, spec, members))
    assert [c["size"] for c in got["cohorts"]] == [2, 1, 0, 1, 0]

    other = bootstrap_org(servers.postgres_dsn, "Other", f"r{tenant['project_slug']}", "Other", "other")
    foreign = await gql(api, other.admin_token, QUERY, {**variables, "p": other.project_id})
    made_up = await gql(api, other.admin_token, QUERY, {**variables, "p": other.project_id,
                                                        "c": "00000000-0000-0000-0000-000000000000"})  # fmt: skip
    assert error_of(foreign) == f"cohort {cohort_id!r} not found"
    assert error_of(made_up) == "cohort '00000000-0000-0000-0000-000000000000' not found"
    # the other org cannot read this project at all
    assert error_of(await gql(api, other.admin_token, QUERY, variables)).startswith("project ")
