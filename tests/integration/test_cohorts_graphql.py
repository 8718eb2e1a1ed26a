"""Cohorts on real ClickHouse + Postgres: cohortSize / cohortMembers equal the Python reference and hand-computed
members (event counts, property filters, AND/OR, "did not", ranges, an anonymous visitor merged into a user,
session-only visitors); saved definitions are validated; a saved cohort filters a funnel; another org's cohort
id is not found."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from query_api.cohorts import cohort_sql, parse_definition, reference_members
from query_api.funnels import CohortFilter, CohortSubquery, parse_funnel_spec, run_funnel
from query_api.tenant_scope import Tenant
from schemas.records import EventRecord
from tests.conftest import Servers
from tests.integration.test_cohorts_support import NOW, error_of, ev, gql, ok, store

pytest_plugins = ("tests.integration.test_cohorts_support",)  # the api and ch fixtures
pytestmark = pytest.mark.integration

SIZE = "query($p: ID!, $d: JSON, $c: ID) { cohortSize(projectId: $p, definition: $d, cohortId: $c) }"
MEMBERS = """query($p: ID!, $d: JSON, $after: String) {
  cohortMembers(projectId: $p, definition: $d, first: 2, after: $after) { persons nextCursor } }"""


def _ago(days: float) -> Any:
    return NOW - timedelta(days=days)


def _dataset() -> list[EventRecord]:
    mobile = dataclasses.replace(ev(_ago(2), "s2", user="u2", etype="page.view", page_path="/home"),
                                 extra={"device.type": "mobile"})  # fmt: skip
    return [
        ev(_ago(1), "s1", user="u1", name="buy", meta={"plan": "pro"}), ev(_ago(3), "s1", user="u1", name="buy"),
        ev(_ago(9), "s1b", user="u1", name="buy"),
        ev(_ago(1), "s1", user="u1", etype="page.view", page_path="/pricing"),
        ev(_ago(2), "s2", user="u2", name="buy"), mobile,
        ev(_ago(5), "s3", anon="a7", name="buy"), ev(_ago(4), "s3", anon="a7", name="buy"),
        ev(_ago(3), "s3", anon="a7", user="u3", name="identify"),  # merges a7 into u3
        ev(_ago(6), "s9", name="buy"),  # session only
        ev(_ago(40), "s4", user="u4", name="buy"), ev(_ago(1), "s4b", user="u4", etype="page.view", page_path="/"),
    ]  # fmt: skip


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"did_event": {"event_name": "buy"}, "min": 2}, {"user:u1", "user:u3"}),
    ({"property": "page.path", "op": "eq", "value": "/pricing"}, {"user:u1"}),
    ({"any": [{"did_event": {"event_name": "buy"}, "min": 1, "max": 1},
              {"property": "extra.device.type", "op": "eq", "value": "mobile"}]}, {"user:u2", "session:s9"}),
    ({"did_event": {"event_name": "buy"}, "min": 0, "max": 0}, {"user:u4"}),  # did not buy in 30 days
    ({"did_event": {"event_name": "buy"}, "days": 60}, {"user:u1", "user:u2", "user:u3", "user:u4", "session:s9"}),
    ({"all": [{"did_event": {"event_name": "buy"}},
              {"property": "metadata.plan", "op": "in", "values": ["pro", "team"]}]}, {"user:u1"}),
    ({"did_event": {}, "min": 3, "days": 7}, {"user:u1", "user:u3"}),  # u1: 3 events within 7 days, u3: 3
]  # fmt: skip


async def test_members_equal_reference_and_hand_computed(
    api: httpx.AsyncClient, ch: Client, tenant: dict[str, str]
) -> None:
    stored = await store(ch, tenant, _dataset())
    token, p = tenant["admin_token"], tenant["project_id"]
    for definition, expected in CASES:
        assert reference_members(stored, parse_definition(definition), NOW) == expected, definition
        assert (await ok(api, token, SIZE, {"p": p, "d": definition}))["cohortSize"] == len(expected), definition
        seen: list[str] = []
        after = None
        while True:  # pages of 2, in person-key order, no gaps or repeats
            page = (await ok(api, token, MEMBERS, {"p": p, "d": definition, "after": after}))["cohortMembers"]
            seen += page["persons"]
            if (after := page["nextCursor"]) is None:
                break
        assert seen == sorted(expected), definition


async def test_saved_cohorts_validation_funnel_filter_and_tenant_boundary(
    api: httpx.AsyncClient, ch: Client, tenant: dict[str, str], servers: Servers
) -> None:
    from productgraph.admin import bootstrap_org

    stored = await store(ch, tenant, _dataset())
    token, p = tenant["admin_token"], tenant["project_id"]
    save = "mutation($p: ID!, $n: String!, $d: JSON!) { saveCohort(projectId: $p, name: $n, definition: $d) { id } }"
    bad = await gql(api, token, save, {"p": p, "n": "bad", "d": {"did_event": {"event_name": "buy"}, "min": -1}})
    assert error_of(bad) == "definition.min: must be an integer in 0..1000000"
    bad = await gql(api, token, save, {"p": p, "n": "bad", "d": {"event": "buy"}})
    assert error_of(bad) == "definition: needs 'did_event', 'property', 'all' or 'any'"
    definition = CASES[0][0]
    cohort_id = (await ok(api, token, save, {"p": p, "n": "buyers", "d": definition}))["saveCohort"]["id"]
    assert (await ok(api, token, SIZE, {"p": p, "c": cohort_id}))["cohortSize"] == 2
    both = await gql(api, token, SIZE, {"p": p, "c": cohort_id, "d": definition})
    assert error_of(both) == "cohortId: give either cohortId or definition"

    # a funnel filtered by the cohort (the funnels' user-id subquery contract): u1 and u3 bought twice
    t = Tenant(tenant["org_id"], p)
    sub = cohort_sql(parse_definition(definition), NOW).user_ids()
    spec = parse_funnel_spec({"steps": [{"event_name": "buy"}, {"event_name": "buy"}],
                              "date_from": NOW - timedelta(days=30), "date_to": NOW})  # fmt: skip
    subquery = CohortSubquery(sub.sql, tuple(sub.params.items()))
    filtered = dataclasses.replace(spec, cohort=CohortFilter(subquery=subquery))
    by_ids = dataclasses.replace(spec, cohort=CohortFilter(user_ids=frozenset({"u1", "u3"})))
    got = await run_funnel(ch, t, filtered)
    assert got == await run_funnel(ch, t, by_ids)
    assert [s.count for s in got.steps] == [2, 1]  # u1's buys are days apart (24 h window); u3's exactly 24 h
    assert len(stored) == 12
    # the same through GraphQL's cohortId (and only that: the unfiltered funnel counts more buyers)
    funnel = "query($p: ID!, $s: JSON!, $c: ID) { funnel(projectId: $p, spec: $s, cohortId: $c) { steps { count } } }"
    question = {"steps": [{"event_name": "buy"}, {"event_name": "buy"}],
                "date_from": (NOW - timedelta(days=30)).isoformat(), "date_to": NOW.isoformat()}  # fmt: skip
    counted = await ok(api, token, funnel, {"p": p, "s": question, "c": cohort_id})
    assert [s["count"] for s in counted["funnel"]["steps"]] == [2, 1]
    unfiltered = await ok(api, token, funnel, {"p": p, "s": question})
    assert unfiltered["funnel"]["steps"][0]["count"] > 2
    both = await gql(api, token, funnel, {"p": p, "s": {**question, "cohort_user_ids": ["u1"]}, "c": cohort_id})
    assert error_of(both) == "cohortId: give either cohortId or spec.cohort_user_ids"

    other = bootstrap_org(servers.postgres_dsn, "Other", f"c{tenant['project_slug']}", "Other", "other")
    foreign = await gql(api, other.admin_token, SIZE, {"p": other.project_id, "c": cohort_id})
    assert error_of(foreign) == f"cohort {cohort_id!r} not found"
    foreign = await gql(api, other.admin_token, funnel, {"p": other.project_id, "s": question, "c": cohort_id})
    assert error_of(foreign) == f"cohort {cohort_id!r} not found"
    assert error_of(await gql(api, other.admin_token, SIZE, {"p": p, "c": cohort_id})).startswith("project ")
