"""Trends over GraphQL on real ClickHouse + Postgres equal the Python reference and hand-computed counts:
zero-filled buckets, filters, top-N breakdown with "(other)" and "(none)", a saved cohort as filter, guard rails."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from query_api.cohorts import parse_definition, reference_members
from query_api.trends import TrendsResult, evaluate_reference, parse_trends_spec
from tests.integration.test_cohorts_support import NOW, day, error_of, ev, gql, ok, store

pytest_plugins = ("tests.integration.test_cohorts_support",)  # the api and ch fixtures
pytestmark = pytest.mark.integration

QUERY = """query($p: ID!, $i: TrendInterval!, $from: DateTime, $to: DateTime, $type: String, $name: String,
                 $page: String, $bd: String, $c: ID, $limit: Int! = 10) {
  trends(projectId: $p, interval: $i, dateFrom: $from, dateTo: $to, eventType: $type, eventName: $name, page: $page,
         breakdown: $bd, cohortId: $c, limit: $limit) { interval buckets total series { value total counts } } }"""


def _plain(r: TrendsResult) -> dict[str, Any]:
    return {
        "interval": r.interval,
        "buckets": [b.isoformat() for b in r.buckets],
        "total": r.total,
        "series": [{"value": s.value, "total": s.total, "counts": list(s.counts)} for s in r.series],
    }


async def test_trends_equal_reference_and_hand_computed(
    api: httpx.AsyncClient, ch: Client, tenant: dict[str, str]
) -> None:
    events = [
        ev(day(-3, 10), "s1", user="u1", name="buy"), ev(day(-3, 11), "s1", user="u1", name="buy"),
        ev(day(-3, 12), "s1", user="u1", name="view", etype="page.view", page_path="/a"),
        ev(day(-1, 9), "s2", user="u2", name="buy"), ev(day(-1, 9.5), "s2", user="u2", name="cart"),
        ev(day(-1, 10), "s2", user="u2", etype="page.view", page_path="/a"),
        ev(day(-1, 11), "s3", anon="x", name="cart"), ev(day(-6, 10), "s0", user="u9", name="buy"),  # before range
    ]  # fmt: skip
    stored = await store(ch, tenant, [*events, events[0]])  # a redelivery counts once
    token, p = tenant["admin_token"], tenant["project_id"]
    base = {"p": p, "i": "DAY", "from": day(-3, 0).isoformat(), "to": day(0, 0).isoformat()}

    async def check(variables: dict[str, Any], **spec: Any) -> dict[str, Any]:
        got = (await ok(api, token, QUERY, variables))["trends"]
        assert got == _plain(evaluate_reference(stored, parse_trends_spec(now=NOW, **spec), spec.get("cohort")))
        return dict(got)

    rng: dict[str, Any] = {"interval": "DAY", "date_from": day(-3, 0), "date_to": day(0, 0)}
    got = await check(base, **rng)
    assert got["buckets"] == [day(d, 0).isoformat() for d in (-3, -2, -1)]
    assert got["series"] == [{"value": "(all)", "total": 7, "counts": [3, 0, 4]}]
    got = await check({**base, "bd": "NAME", "limit": 2}, breakdown="NAME", limit=2, **rng)
    assert [(s["value"], s["counts"]) for s in got["series"]] == [
        ("buy", [2, 0, 1]), ("cart", [0, 0, 2]), ("(other)", [1, 0, 1])]  # fmt: skip
    got = await check({**base, "bd": "PAGE"}, breakdown="PAGE", **rng)
    assert [(s["value"], s["total"]) for s in got["series"]] == [("(none)", 5), ("/a", 2)]
    got = await check({**base, "type": "page.view", "page": "/a"}, event_type="page.view", page="/a", **rng)
    assert got["total"] == 2
    got = await check({**base, "name": "cart", "bd": "user.id"}, event_name="cart", breakdown="user.id", **rng)
    assert [(s["value"], s["total"]) for s in got["series"]] == [("(none)", 1), ("u2", 1)]
    hourly = {"p": p, "i": "HOUR", "from": day(-1, 9).isoformat(), "to": day(-1, 12).isoformat()}
    got = await check(hourly, interval="HOUR", date_from=day(-1, 9), date_to=day(-1, 12))
    assert got["series"][0]["counts"] == [2, 1, 1]

    definition = {"did_event": {"event_name": "buy"}}
    save = 'mutation($p: ID!, $d: JSON!) { saveCohort(projectId: $p, name: "buyers", definition: $d) { id } }'
    cohort_id = (await ok(api, token, save, {"p": p, "d": definition}))["saveCohort"]["id"]
    members = reference_members(stored, parse_definition(definition), NOW)
    got = (await ok(api, token, QUERY, {**base, "c": cohort_id}))["trends"]
    assert got == _plain(evaluate_reference(stored, parse_trends_spec(now=NOW, **rng), members))
    assert got["total"] == 6  # not the anonymous visitor's cart

    too_many = await gql(api, token, QUERY, {"p": p, "i": "MINUTE", "from": day(-3, 0).isoformat()})
    assert error_of(too_many).startswith("interval: ") and "at most 1500" in error_of(too_many)
    assert error_of(await gql(api, token, QUERY, {"p": p, "i": "DAY", "type": "nope"})).startswith("eventType: ")
    assert error_of(await gql(api, token, QUERY, {"p": p, "i": "DAY", "bd": "ui.scroll.position"})) == (
        "breakdown: unknown or unsupported property 'ui.scroll.position'")  # fmt: skip
    assert error_of(await gql(api, token, QUERY, {**base, "limit": 51})) == "limit: must be an integer in 1..50"
