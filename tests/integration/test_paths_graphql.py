"""Top paths over GraphQL on real ClickHouse equal the Python reference and hand-computed paths: the first
anchor per session segment, AFTER and BEFORE, depth, a segment split by the timeout, pages vs event names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from query_api.paths import PathsResult, evaluate_reference, parse_paths_spec
from schemas.records import EventRecord
from tests.integration.test_cohorts_support import NOW, day, error_of, ev, gql, ok, store

pytest_plugins = ("tests.integration.test_cohorts_support",)  # the api and ch fixtures
pytestmark = pytest.mark.integration

QUERY = """query($p: ID!, $s: JSON!, $dir: PathDirection!, $depth: Int!, $node: PathNode!, $from: DateTime,
                 $to: DateTime, $limit: Int! = 10) {
  paths(projectId: $p, step: $s, direction: $dir, depth: $depth, node: $node, dateFrom: $from, dateTo: $to,
        limit: $limit) { direction total paths { nodes count rate } } }"""
SIGNUP = {"event_name": "signup"}


def _plain(r: PathsResult) -> dict[str, Any]:
    return {
        "direction": r.direction,
        "total": r.total,
        "paths": [{"nodes": list(x.nodes), "count": x.count, "rate": x.rate} for x in r.paths],
    }


def _session(session: str, start_h: float, steps: list[str], gap_after: int | None = None) -> list[EventRecord]:
    """Pages (``/...``) and named clicks one minute apart; a 31-minute gap after step ``gap_after``."""
    out, t = [], day(-1, start_h)
    for i, s in enumerate(steps):
        if s.startswith("/"):
            out.append(ev(t, session, user=session, etype="page.view", page_path=s))
        else:
            out.append(ev(t, session, user=session, etype="ui.click", name=s))
        t += timedelta(minutes=31 if i == gap_after else 1)
    return out


async def test_paths_equal_reference_and_hand_computed(
    api: httpx.AsyncClient, ch: Client, tenant: dict[str, str]
) -> None:
    events = [
        *_session("s1", 8, ["/home", "signup", "/pricing", "/checkout", "signup", "/done", "/extra"]),
        *_session("s2", 9, ["/home", "signup", "/pricing", "/checkout"]),
        *_session("s3", 10, ["/blog", "signup", "/pricing", "/checkout", "/done"]),
        *_session("s4", 11, ["signup", "/pricing"], gap_after=0),  # the gap ends the segment: nothing after
        *_session("s5", 12, ["/home", "/x"]),  # no anchor
    ]
    stored = await store(ch, tenant, events)
    token, p = tenant["admin_token"], tenant["project_id"]
    rng: dict[str, Any] = {"date_from": day(-2, 0), "date_to": day(0, 0)}
    base = {"p": p, "s": SIGNUP, "from": day(-2, 0).isoformat(), "to": day(0, 0).isoformat()}

    async def check(direction: str, depth: int, node: str = "PAGE") -> list[tuple[list[str], int]]:
        variables = {**base, "dir": direction, "depth": depth, "node": node}
        got = (await ok(api, token, QUERY, variables))["paths"]
        spec = parse_paths_spec(step=SIGNUP, direction=direction, depth=depth, node=node, now=NOW, **rng)
        assert got == _plain(evaluate_reference(stored, spec))
        assert got["total"] == 4
        return [(x["nodes"], x["count"]) for x in got["paths"]]

    assert await check("AFTER", 3) == [(["/pricing", "/checkout", "/done"], 2), ([], 1), (["/pricing", "/checkout"], 1)]
    assert await check("AFTER", 1) == [(["/pricing"], 3), ([], 1)]
    assert await check("BEFORE", 1) == [(["/home"], 2), ([], 1), (["/blog"], 1)]
    assert await check("AFTER", 2, "EVENT") == [([], 3), (["signup"], 1)]  # s1's second signup is a named event
    # the anchor must lie in the range: nothing before yesterday 08:30
    late = {**base, "dir": "AFTER", "depth": 2, "node": "PAGE", "from": day(-1, 8.5).isoformat()}
    got = (await ok(api, token, QUERY, late))["paths"]
    assert got["total"] == 3

    assert error_of(await gql(api, token, QUERY, {**base, "dir": "AFTER", "depth": 6, "node": "PAGE"})) == (
        "depth: must be an integer in 1..5")  # fmt: skip
    assert error_of(await gql(api, token, QUERY, {**base, "s": {}, "dir": "AFTER", "depth": 2, "node": "PAGE"})) == (
        "step.matcher: needs at least one condition")  # fmt: skip
    assert error_of(await gql(api, token, QUERY, {**base, "dir": "AFTER", "depth": 2, "node": "PAGE",
                                                  "from": day(-500, 0).isoformat()})) == (
        "dateTo: the range may span at most 400 days")  # fmt: skip
    assert day(-1, 13) < NOW
