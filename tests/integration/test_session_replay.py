"""Session replay over GraphQL on real ClickHouse, Postgres and Redis, with a hand-written session.

Session ``r1``, T = yesterday at a whole minute (ms offsets; seq = event.sequence, rcv = receive offset):

======  ==============  ======  ===  ====  =======================================================
id      type            at      seq  rcv   what
======  ==============  ======  ===  ====  =======================================================
e01     page.view       0              0   /home (delivered twice)
e02     ui.click        1000    2     10   after e03/e04: higher sequence
e03     ui.click        1000    1     10   after e04: same sequence, received later
e04     custom          1000    1      3
zz      ui.click        2000          20   same time, no sequence (= 0), same receipt: event id
aa      ui.click        2000          20   order, so aa before zz
e07     state.change    3000          0    cart.items: [] -> [{"id":"prod_123","qty":1}]
e08     state.change    4000          0    {"a":{"b":[1,2]},"x":1,"k":"v"} -> {"a":{"b":[1]},"y":2,"k":7}
e09     api.request     5000          0    GET /api/cart
e10     api.response    6000          0    GET /api/cart 200, 123.5 ms
e11     page.view       7000          0    /cart
e12     error           8000          0    TypeError "boom" in CartView on /cart
e13     page.view       9000          0    /checkout
e20     page.view       2 h           0    /home        (segment 2)
e21     ui.click        2 h + 1 s     0                 (segment 2)
======  ==============  ======  ===  ====  =======================================================
"""

from __future__ import annotations

import dataclasses
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

T = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0)
T_MS = int(T.timestamp()) * 1000
H = 3600 * 1000
SEGMENT_1 = ["e01", "e04", "e03", "e02", "aa", "zz", "e07", "e08", "e09", "e10", "e11", "e12", "e13"]
SEGMENT_2 = ["e20", "e21"]


def _at(ms: int) -> str:
    return datetime.fromtimestamp((T_MS + ms) / 1000, tz=UTC).isoformat()


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


def _ev(eid: str, etype: str, at: int, rcv: int = 0, fields: dict[str, Any] | None = None) -> EventRecord:
    """An event of the table above (tenant and session are set by :func:`_load`)."""
    meta = {"plan": "pro"} if eid == "e01" else {}
    ts, received = T_MS + at, T_MS + 60_000 + rcv
    return EventRecord("", "", eid, "", etype, ts, received, ts, fields=fields or {}, metadata=meta)


async def _load(ch: Client, org: str, project: str, session: str = "r1") -> None:
    o, p = org, project
    cart = {"ui.state.key": "cart.items", "ui.state.before": "[]", "ui.state.after": '[{"id":"prod_123","qty":1}]'}
    obj = {
        "ui.state.key": "checkout",
        "ui.state.before": '{"a":{"b":[1,2]},"x":1,"k":"v"}',
        "ui.state.after": '{"a":{"b":[1]},"y":2,"k":7}',
    }
    events = [
        _ev("e01", "page.view", 0, fields={"page.path": "/home", "user.id": "u1"}),
        _ev("e02", "ui.click", 1000, 10, fields={"event.sequence": 2}),
        _ev("e03", "ui.click", 1000, 10, fields={"event.sequence": 1}),
        _ev("e04", "custom", 1000, 3, fields={"event.sequence": 1, "event.name": "promo shown"}),
        _ev("zz", "ui.click", 2000, 20),
        _ev("aa", "ui.click", 2000, 20, fields={"ui.action": "open"}),
        _ev("e07", "state.change", 3000, fields=cart),
        _ev("e08", "state.change", 4000, fields=obj),
        _ev("e09", "api.request", 5000, fields={"api.method": "GET", "api.path": "/api/cart"}),
        _ev("e10", "api.response", 6000,
            fields={"api.method": "GET", "api.path": "/api/cart", "api.status_code": 200, "api.duration_ms": 123.5}),
        _ev("e11", "page.view", 7000, fields={"page.path": "/cart"}),
        _ev("e12", "error", 8000, fields={"error.type": "TypeError", "error.message": "boom",
                                     "error.component": "CartView", "page.path": "/cart"}),
        _ev("e13", "page.view", 9000, fields={"page.path": "/checkout"}),
        _ev("e20", "page.view", 2 * H, fields={"page.path": "/home"}),
        _ev("e21", "ui.click", 2 * H + 1000),
    ]  # fmt: skip
    events = [dataclasses.replace(e, org_id=o, project_id=p, session_id=session) for e in events]
    sink = ClickHouseEventSink(ch)
    for e in [*events, events[0]]:  # e01 delivered twice
        sink.add(e)
    await sink.flush()
    s1 = SessionSummary(1, T_MS, T_MS + 9000, 13, 3, 3, 1, "/home", "/checkout", "u1")
    s2 = SessionSummary(2, T_MS + 2 * H, T_MS + 2 * H + 1000, 2, 1, 1, 0, "/home", "/home", "u1")
    stale = SessionSummary(3, T_MS + 3 * H, T_MS + 3 * H, 1, 0, 0, 0)
    rows = [
        session_row(o, p, session, s1, 1),
        session_row(o, p, session, s2, 1),
        session_row(o, p, session, stale, 1),
        session_tombstone_row(o, p, session, 3, 2, T_MS + 3 * H),  # merged away: no segment 3
    ]
    ch.insert("sessions", rows, column_names=list(SESSION_COLUMNS))


@pytest.fixture
async def loaded(servers: Servers, tenant: dict[str, str]) -> dict[str, str]:
    ch = clickhouse_client(servers.clickhouse_url)
    await _load(ch, tenant["org_id"], tenant["project_id"])
    other = bootstrap_org(servers.postgres_dsn, "Other", f"o{tenant['project_slug']}", "Other", "other")
    await _load(ch, other.org_id, other.project_id, session="other-r1")
    ch.close()
    return {**tenant, "other_token": other.admin_token, "other_project": other.project_id}


async def _gql(client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


REPLAY = """query($p: ID!, $s: String!, $seg: Int, $first: Int! = 100, $after: String) {
  sessionReplay(projectId: $p, sessionId: $s, segment: $seg, first: $first, after: $after) {
    sessionId segment
    segments { segment startedAt endedAt durationMs entryPage exitPage pageViews eventCount errorCount userId }
    events { nodes { eventId type name page timestamp sequence attributes metadata
                     stateDiff { key added { path oldValue newValue } removed { path oldValue newValue }
                                 changed { path oldValue newValue } truncated } }
             pageInfo { hasNextPage endCursor } }
    pageTransitions { from to at eventId }
    apiCalls { eventId type at method path statusCode durationMs }
    errors { eventId at message type component page }
    timelineTruncated
  } }"""


async def _replay(api: httpx.AsyncClient, token: str, **variables: Any) -> dict[str, Any]:
    body = await _gql(api, token, REPLAY, variables)
    assert "errors" not in body, body
    return dict(body["data"]["sessionReplay"])


async def test_segment_replay_in_order_with_diffs_and_timeline(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    r = await _replay(api, loaded["admin_token"], p=loaded["project_id"], s="r1", seg=1)
    assert r["segments"] == [
        {"segment": 1, "startedAt": _at(0), "endedAt": _at(9000), "durationMs": 9000, "entryPage": "/home",
         "exitPage": "/checkout", "pageViews": 3, "eventCount": 13, "errorCount": 1, "userId": "u1"}
    ]  # fmt: skip
    nodes = r["events"]["nodes"]
    assert [n["eventId"] for n in nodes] == SEGMENT_1  # the duplicate delivery of e01 shows once
    assert r["events"]["pageInfo"] == {"hasNextPage": False, "endCursor": r["events"]["pageInfo"]["endCursor"]}
    by_id = {n["eventId"]: n for n in nodes}
    assert by_id["e01"] == {
        "eventId": "e01", "type": "page.view", "name": "", "page": "/home", "timestamp": _at(0), "sequence": None,
        "attributes": {"page.path": "/home", "user.id": "u1"}, "metadata": {"plan": "pro"}, "stateDiff": None,
    }  # fmt: skip
    assert (by_id["e04"]["name"], by_id["e04"]["sequence"]) == ("promo shown", 1)
    assert by_id["e07"]["stateDiff"] == {
        "key": "cart.items",
        "added": [{"path": "$[0]", "oldValue": None, "newValue": {"id": "prod_123", "qty": 1}}],
        "removed": [],
        "changed": [],
        "truncated": False,
    }
    assert by_id["e08"]["stateDiff"] == {
        "key": "checkout",
        "added": [{"path": "$.y", "oldValue": None, "newValue": 2}],
        "removed": [{"path": "$.a.b[1]", "oldValue": 2, "newValue": None}, {"path": "$.x", "oldValue": 1,
                                                                            "newValue": None}],
        "changed": [{"path": "$.k", "oldValue": "v", "newValue": 7}],
        "truncated": False,
    }  # fmt: skip
    assert r["pageTransitions"] == [
        {"from": None, "to": "/home", "at": _at(0), "eventId": "e01"},
        {"from": "/home", "to": "/cart", "at": _at(7000), "eventId": "e11"},
        {"from": "/cart", "to": "/checkout", "at": _at(9000), "eventId": "e13"},
    ]
    assert r["apiCalls"] == [
        {"eventId": "e09", "type": "api.request", "at": _at(5000), "method": "GET", "path": "/api/cart",
         "statusCode": None, "durationMs": None},
        {"eventId": "e10", "type": "api.response", "at": _at(6000), "method": "GET", "path": "/api/cart",
         "statusCode": 200, "durationMs": 123.5},
    ]  # fmt: skip
    assert r["errors"] == [
        {"eventId": "e12", "at": _at(8000), "message": "boom", "type": "TypeError", "component": "CartView",
         "page": "/cart"}
    ]  # fmt: skip
    assert r["timelineTruncated"] is False


async def test_pages_without_gaps_or_duplicates(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    for seg, expected in ((1, SEGMENT_1), (None, SEGMENT_1 + SEGMENT_2), (2, SEGMENT_2)):
        for size in (1, 3, 4):
            seen: list[str] = []
            after = None
            timeline = None
            while True:
                r = await _replay(
                    api, loaded["admin_token"], p=loaded["project_id"], s="r1", seg=seg, first=size, after=after
                )
                # the timeline is the selection's whole timeline on every page (read on its own when the page
                # does not hold every event, taken from the page when it does)
                got = {k: r[k] for k in ("pageTransitions", "apiCalls", "errors", "timelineTruncated")}
                assert timeline is None or got == timeline
                timeline = got
                page = r["events"]
                seen += [n["eventId"] for n in page["nodes"]]
                assert len(page["nodes"]) == size or not page["pageInfo"]["hasNextPage"]
                if not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
            assert seen == expected, (seg, size)
            one_page = await _replay(api, loaded["admin_token"], p=loaded["project_id"], s="r1", seg=seg, first=100)
            assert timeline == {k: one_page[k] for k in timeline}, (seg, size)
    whole = await _replay(api, loaded["admin_token"], p=loaded["project_id"], s="r1")
    assert [s["segment"] for s in whole["segments"]] == [1, 2]  # segment 3 was tombstoned
    assert [(t["from"], t["to"]) for t in whole["pageTransitions"]] == [
        (None, "/home"), ("/home", "/cart"), ("/cart", "/checkout"), ("/checkout", "/home"),
    ]  # fmt: skip


async def test_not_found_and_bad_arguments(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    p, token = loaded["project_id"], loaded["admin_token"]
    first = await _replay(api, token, p=p, s="r1", seg=1, first=2)
    cursor = first["events"]["pageInfo"]["endCursor"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"s": "nope"}, "session 'nope' not found"),
        ({"s": "r1", "seg": 3}, "session 'r1' not found"),  # a tombstoned segment
        ({"s": "r1", "seg": 9}, "session 'r1' not found"),
        ({"s": "other-r1"}, "session 'other-r1' not found"),  # exists, in the other org's project
        ({"s": "r1", "seg": 0}, "segment: must be a positive segment number"),
        ({"s": "r1", "first": 1001}, "first: must be between 1 and 1000"),
        ({"s": "r1", "seg": 2, "after": cursor}, "after: the cursor belongs to another session replay"),
        ({"s": "r1", "after": "garbage"}, "after: not a cursor of this list"),
    ]
    for variables, message in cases:
        body = await _gql(api, token, REPLAY, {"p": p, **variables})
        assert body["data"] is None and body["errors"][0]["message"] == message, (variables, body)
    # The other org's token: the project is not found, worded like a made-up project.
    foreign = await _gql(api, loaded["other_token"], REPLAY, {"p": p, "s": "r1"})
    assert foreign["data"] is None and foreign["errors"][0]["message"] == f"project {p!r} not found"
    own = await _replay(api, loaded["other_token"], p=loaded["other_project"], s="other-r1", seg=2)
    assert [n["eventId"] for n in own["events"]["nodes"]] == SEGMENT_2


async def test_plain_function_equals_graphql(servers: Servers, loaded: dict[str, str]) -> None:
    """The function the MCP tools call gives the same events as the GraphQL field."""
    from query_api.sessions import session_replay
    from query_api.tenant_scope import Tenant, scoped_query

    ch = clickhouse_client(servers.clickhouse_url)

    class Reader:
        async def query(self, tenant: Tenant, sql: str, params: Any = None, settings: Any = None) -> Any:
            return await scoped_query(ch, tenant, sql, params, settings)

    tenant = Tenant(loaded["org_id"], loaded["project_id"])
    r = await session_replay(Reader(), tenant, "r1", None, first=20)
    assert [e.event_id for e in r.page.events] == SEGMENT_1 + SEGMENT_2 and not r.page.has_next_page
    assert [e.event_id for e in r.timeline.errors] == ["e12"] and len(r.timeline.page_transitions) == 4
    ch.close()


NARROW = """query($p: ID!, $s: String!, $seg: Int) {
  sessionReplay(projectId: $p, sessionId: $s, segment: $seg) {
    events { nodes { eventId type name page timestamp sequence stateDiff { key added { path } removed { path }
                                                                           changed { path } } }
             pageInfo { hasNextPage endCursor } } } }"""
FRAGMENT = """query($p: ID!, $s: String!, $seg: Int) {
  sessionReplay(projectId: $p, sessionId: $s, segment: $seg) { events { nodes { ...E } } } }
fragment E on ReplayEvent { eventId attributes metadata }"""


async def test_narrow_selection_reads_fewer_columns_same_answer(api: httpx.AsyncClient, loaded: dict[str, str]) -> None:
    """Without attributes/metadata/extra the replay reads the narrow column set: the fields asked for are the
    same as from a full read, and a fragment still gets everything."""
    token, p = loaded["admin_token"], loaded["project_id"]

    def keep(node: dict[str, Any]) -> dict[str, Any]:
        d = node["stateDiff"]
        small = None if d is None else {k: [{"path": c["path"]} for c in d[k]] for k in ("added", "removed", "changed")}
        return {**{k: node[k] for k in ("eventId", "type", "name", "page", "timestamp", "sequence")},
                "stateDiff": None if d is None else {"key": d["key"], **(small or {})}}  # fmt: skip

    for seg in (None, 1, 2):
        full = await _replay(api, token, p=p, s="r1", seg=seg)
        narrow = await _gql(api, token, NARROW, {"p": p, "s": "r1", "seg": seg})
        assert "errors" not in narrow, narrow
        got = narrow["data"]["sessionReplay"]["events"]
        assert got["nodes"] == [keep(n) for n in full["events"]["nodes"]]
        assert got["pageInfo"] == full["events"]["pageInfo"]
    fragment = await _gql(api, token, FRAGMENT, {"p": p, "s": "r1", "seg": 1})
    e01 = next(n for n in fragment["data"]["sessionReplay"]["events"]["nodes"] if n["eventId"] == "e01")
    assert e01 == {"eventId": "e01", "attributes": {"page.path": "/home", "user.id": "u1"}, "metadata": {"plan": "pro"}}
