"""Session search over GraphQL on real ClickHouse, Postgres and Redis, with hand-written sessions.

Segments (``sessions`` rows written as the sessionizer would, events stored with the warehouse sink),
B = yesterday at a whole minute; order is started_at desc, then session id, then segment:

=========  =======  ===========  ========  =====  ================================  =================
session    segment  started      duration  user   events                            journey / errors
=========  =======  ===========  ========  =====  ================================  =================
s-a        1        B            60 s      u1     /home, /pricing; "Add to Cart"    j1 converted
tie-2      1        B - 1 h      5 s       u2     /docs/intro                       j1 dropped, 1 err
tie-1      1        B - 1 h      20 s      u1     /docs; component "SearchBox"
d          2        B - 2 h      30 s      u3     /home; event "Checkout Started"
d          1        B - 3 h      1 s       u3     /pricing
old        1        now - 10 d   2 s       u1     /pricing                          (outside 7 days)
gone       1        B            (tombstone: never listed)
=========  =======  ===========  ========  =====  ================================  =================

``s-a`` also has a "zebra" action two hours after its span (it belongs to no segment of ``s-a``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from productgraph.admin import bootstrap_org
from productgraph.connections import clickhouse_client
from query_api.app import create_app
from query_api.settings import QueryApiSettings
from schemas.records import EventRecord
from schemas.rows import SESSION_COLUMNS, session_row, session_tombstone_row
from schemas.sessions import SessionSummary
from stream_processors.sinks import ClickHouseEventSink
from tests.conftest import Servers

pytestmark = pytest.mark.integration

B = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0)
B_MS = int(B.timestamp()) * 1000
H = 3600 * 1000
ORDER = ["s-a/1", "tie-1/1", "tie-2/1", "d/2", "d/1"]


@pytest.fixture
async def api(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    settings = QueryApiSettings(
        clickhouse_url=servers.clickhouse_url, postgres_dsn=servers.postgres_dsn, redis_url=servers.redis_url
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


def _segment(
    org: str, project: str, session: str, segment: int, start: int, duration: int, user: str, *,
    errors: int = 0, journey: tuple[str, str] = ("", ""), version: int = 1,
) -> list[Any]:  # fmt: skip
    s = SessionSummary(segment, start, start + duration, 2, 1, 1, errors, "/", "/", user)
    row = session_row(org, project, session, s, version)
    row[SESSION_COLUMNS.index("journey_id")] = journey[0]
    row[SESSION_COLUMNS.index("conversion_status")] = journey[1]
    return row


def _event(org: str, project: str, eid: str, session: str, etype: str, ts: int, **fields: Any) -> EventRecord:
    return EventRecord(org, project, eid, session, etype, ts, ts + 50, fields=fields)


async def _load(ch: Client, org: str, project: str) -> None:
    o, p = org, project
    rows = [
        _segment(o, p, "s-a", 1, B_MS, 60_000, "old-user", version=1),  # replaced by version 2
        _segment(o, p, "s-a", 1, B_MS, 60_000, "u1", journey=("j1", "converted"), version=2),
        _segment(o, p, "tie-2", 1, B_MS - H, 5_000, "u2", errors=1, journey=("j1", "dropped")),
        _segment(o, p, "tie-1", 1, B_MS - H, 20_000, "u1"),
        _segment(o, p, "d", 1, B_MS - 3 * H, 1_000, "u3"),
        _segment(o, p, "d", 2, B_MS - 2 * H, 30_000, "u3"),
        _segment(o, p, "old", 1, B_MS - 9 * 24 * H, 2_000, "u1"),
        _segment(o, p, "gone", 1, B_MS, 1_000, "u1", version=1),
        session_tombstone_row(o, p, "gone", 1, 2, B_MS),
    ]
    ch.insert("sessions", rows, column_names=list(SESSION_COLUMNS))
    events = [
        _event(o, p, "a1", "s-a", "page.view", B_MS, **{"page.path": "/home"}),
        _event(o, p, "a2", "s-a", "page.view", B_MS + 20_000, **{"page.path": "/pricing"}),
        _event(o, p, "a3", "s-a", "ui.click", B_MS + 60_000, **{"ui.action": "Add to Cart"}),
        _event(o, p, "a4", "s-a", "ui.click", B_MS + 2 * H, **{"ui.action": "zebra"}),
        _event(o, p, "t2", "tie-2", "page.view", B_MS - H, **{"page.path": "/docs/intro"}),
        _event(o, p, "t2e", "tie-2", "error", B_MS - H + 5_000, **{"error.message": "boom"}),
        _event(o, p, "t1", "tie-1", "page.view", B_MS - H, **{"page.path": "/docs"}),
        _event(o, p, "t1c", "tie-1", "ui.input", B_MS - H + 20_000, **{"ui.component.name": "SearchBox"}),
        _event(o, p, "d1", "d", "page.view", B_MS - 3 * H, **{"page.path": "/pricing"}),
        _event(o, p, "d2", "d", "page.view", B_MS - 2 * H, **{"page.path": "/home"}),
        _event(o, p, "d3", "d", "custom", B_MS - 2 * H + 30_000, **{"event.name": "Checkout Started"}),
        _event(o, p, "o1", "old", "page.view", B_MS - 9 * 24 * H, **{"page.path": "/pricing"}),
        _event(o, p, "g1", "gone", "page.view", B_MS, **{"page.path": "/home"}),
    ]
    sink = ClickHouseEventSink(ch)
    for e in events:
        sink.add(e)
    await sink.flush()


@pytest.fixture
async def loaded(servers: Servers, tenant: dict[str, str]) -> dict[str, str]:
    ch = clickhouse_client(servers.clickhouse_url)
    await _load(ch, tenant["org_id"], tenant["project_id"])
    # Another org with the same session ids and users: never visible to the tenant.
    other = bootstrap_org(servers.postgres_dsn, "Other", f"o{tenant['project_slug']}", "Other", "other")
    await _load(ch, other.org_id, other.project_id)
    ch.close()
    return {**tenant, "other_token": other.admin_token, "other_project": other.project_id}


async def _gql(client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


SEARCH = """query($p: ID!, $f: SessionFilter, $first: Int! = 50, $after: String) {
  sessions(projectId: $p, filter: $f, first: $first, after: $after) {
    nodes { sessionId segment startedAt durationMs userId errorCount journeyId conversionStatus replayLink }
    pageInfo { hasNextPage endCursor }
  } }"""


async def _ids(api: httpx.AsyncClient, t: dict[str, str], flt: dict[str, Any] | None = None) -> list[str]:
    body = await _gql(api, t["admin_token"], SEARCH, {"p": t["project_id"], "f": flt})
    assert "errors" not in body, body
    conn = body["data"]["sessions"]
    assert conn["pageInfo"]["hasNextPage"] is False
    return [f"{n['sessionId']}/{n['segment']}" for n in conn["nodes"]]


async def test_default_order_ties_versions_tombstones(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    body = await _gql(api, loaded["admin_token"], SEARCH, {"p": loaded["project_id"]})
    nodes = body["data"]["sessions"]["nodes"]
    assert [f"{n['sessionId']}/{n['segment']}" for n in nodes] == ORDER
    first = nodes[0]
    assert first == {
        "sessionId": "s-a",
        "segment": 1,
        "startedAt": B.isoformat(),
        "durationMs": 60_000,
        "userId": "u1",  # version 2 wins over version 1
        "errorCount": 0,
        "journeyId": "j1",
        "conversionStatus": "converted",
        "replayLink": f"/projects/{loaded['project_id']}/sessions/s-a/replay?segment=1",
    }


async def test_pagination_has_no_gaps_or_duplicates(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    seen: list[str] = []
    pages: list[bool] = []
    after = None
    while True:
        body = await _gql(api, loaded["admin_token"], SEARCH, {"p": loaded["project_id"], "first": 2, "after": after})
        conn = body["data"]["sessions"]
        seen += [f"{n['sessionId']}/{n['segment']}" for n in conn["nodes"]]
        pages.append(conn["pageInfo"]["hasNextPage"])
        after = conn["pageInfo"]["endCursor"]
        if not conn["pageInfo"]["hasNextPage"]:
            break
    assert seen == ORDER and pages == [True, True, False]
    # Page size 1 through the tie at B - 1 h, with the total count on the way.
    q = SEARCH.replace("pageInfo {", "totalCount pageInfo {")
    one = await _gql(api, loaded["admin_token"], q, {"p": loaded["project_id"], "first": 1})
    assert one["data"]["sessions"]["totalCount"] == 5
    cursor = one["data"]["sessions"]["pageInfo"]["endCursor"]
    two = await _gql(api, loaded["admin_token"], q, {"p": loaded["project_id"], "first": 1, "after": cursor})
    assert [n["sessionId"] for n in two["data"]["sessions"]["nodes"]] == ["tie-1"]
    cursor = two["data"]["sessions"]["pageInfo"]["endCursor"]
    three = await _gql(api, loaded["admin_token"], q, {"p": loaded["project_id"], "first": 1, "after": cursor})
    assert [n["sessionId"] for n in three["data"]["sessions"]["nodes"]] == ["tie-2"]


async def test_each_filter(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    t = loaded
    assert await _ids(api, t, {"userId": "u1"}) == ["s-a/1", "tie-1/1"]
    assert await _ids(api, t, {"userId": "old-user"}) == []  # an old version's value is gone
    assert await _ids(api, t, {"page": "/pricing"}) == ["s-a/1", "d/1"]  # d's /pricing is in segment 1 only
    assert await _ids(api, t, {"page": "/docs"}) == ["tie-1/1"]
    assert await _ids(api, t, {"page": "/docs", "pageMatch": "PREFIX"}) == ["tie-1/1", "tie-2/1"]
    assert await _ids(api, t, {"page": "/home"}) == ["s-a/1", "d/2"]
    assert await _ids(api, t, {"hasError": True}) == ["tie-2/1"]
    assert await _ids(api, t, {"hasError": False}) == ["s-a/1", "tie-1/1", "d/2", "d/1"]
    assert await _ids(api, t, {"minDurationMs": 20_000}) == ["s-a/1", "tie-1/1", "d/2"]
    assert await _ids(api, t, {"maxDurationMs": 5_000}) == ["tie-2/1", "d/1"]
    assert await _ids(api, t, {"minDurationMs": 5_000, "maxDurationMs": 20_000}) == ["tie-1/1", "tie-2/1"]
    assert await _ids(api, t, {"journeyId": "j1"}) == ["s-a/1", "tie-2/1"]
    assert await _ids(api, t, {"journeyStatus": "converted"}) == ["s-a/1"]
    assert await _ids(api, t, {"journeyId": "j1", "journeyStatus": "dropped"}) == ["tie-2/1"]
    assert await _ids(api, t, {"text": "add TO"}) == ["s-a/1"]  # case-insensitive substring of ui.action
    assert await _ids(api, t, {"text": "searchbox"}) == ["tie-1/1"]  # ui.component.name
    assert await _ids(api, t, {"text": "checkout"}) == ["d/2"]  # event.name, in segment 2 only
    assert await _ids(api, t, {"text": "zebra"}) == []  # after s-a's span: in no segment
    assert await _ids(api, t, {"text": "%"}) == []  # bound, not a LIKE pattern
    assert await _ids(api, t, {"text": "' OR 1=1 --"}) == []
    assert await _ids(api, t, {"page": "/pricing", "text": "cart"}) == ["s-a/1"]  # filters AND
    old_from = (B - timedelta(days=12)).isoformat()
    assert await _ids(api, t, {"dateFrom": old_from}) == [*ORDER, "old/1"]
    assert await _ids(api, t, {"dateFrom": old_from, "page": "/pricing", "userId": "u1"}) == ["s-a/1", "old/1"]
    window = {"dateFrom": (B - timedelta(hours=2)).isoformat(), "dateTo": B.isoformat()}
    assert await _ids(api, t, window) == ["tie-1/1", "tie-2/1", "d/2"]  # [from, to): s-a starts at `to`


async def test_invalid_arguments_are_named(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"f": {"text": "x" * 201}}, "text: longer than 200 characters"),
        ({"f": {"dateFrom": (B - timedelta(days=500)).isoformat()}}, "range longer than 400 days"),
        ({"f": {"journeyStatus": "won"}}, "journeyStatus: must be one of"),
        ({"first": 0}, "first: must be between 1 and 200"),
        ({"after": "nonsense"}, "after: not a cursor of this list"),
    ]
    for variables, message in cases:
        body = await _gql(api, loaded["admin_token"], SEARCH, {"p": loaded["project_id"], **variables})
        assert body["data"] is None and message in body["errors"][0]["message"], body


async def test_other_org_sees_nothing_of_the_project(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    foreign = await _gql(api, loaded["other_token"], SEARCH, {"p": loaded["project_id"]})
    assert foreign["data"] is None
    assert foreign["errors"][0]["message"] == f"project {loaded['project_id']!r} not found"
    # The other org's own project has the same ids: its search is its own.
    own = await _gql(api, loaded["other_token"], SEARCH, {"p": loaded["other_project"], "f": {"userId": "u1"}})
    assert [n["sessionId"] for n in own["data"]["sessions"]["nodes"]] == ["s-a", "tie-1"]
