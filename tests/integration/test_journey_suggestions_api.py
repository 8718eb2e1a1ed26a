"""Journey suggestions and retention through GraphQL and the MCP tools on real servers: hand-computed
suggestions (reloads collapsed, an existing journey covering its sequence), identical MCP answers."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from mcp import Client as McpClient

from query_api.mcp_server import _RETENTION, _SUGGESTIONS, Backends, build_mcp_server
from query_api.settings import QueryApiSettings
from schemas.records import EventRecord
from tests.conftest import Servers
from tests.integration.test_cohorts_support import day, ev, ok, store

pytest_plugins = ("tests.integration.test_cohorts_support",)  # the api and ch fixtures
pytestmark = pytest.mark.integration

DEFINE = """mutation($p: ID!, $steps: [JourneyStepInput!]!) {
  defineJourney(projectId: $p, journey: {name: "Browse to cart", steps: $steps}) { id } }"""


def _visit(session: str, pages: list[str], start_h: float) -> list[EventRecord]:
    t = day(-1, start_h)
    out = []
    for p in pages:
        out.append(ev(t, session, user=f"u-{session}", etype="page.view", page_path=p))
        out.append(ev(t + timedelta(seconds=5), session, user=f"u-{session}", etype="ui.click", name="next"))
        t += timedelta(minutes=1)
    return out


def _payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    if result.structured_content is not None:
        return dict(result.structured_content.get("result", result.structured_content))
    return dict(json.loads(result.content[0].text))


async def test_suggestions_and_retention_match_between_graphql_and_mcp(
    api: httpx.AsyncClient, ch: Client, tenant: dict[str, str], servers: Servers
) -> None:
    await store(
        ch,
        tenant,
        [
            *_visit("s1", ["/", "/products", "/cart", "/checkout"], 8),
            *_visit("s2", ["/", "/products", "/cart"], 9),
            *_visit("s3", ["/blog", "/products", "/products", "/cart"], 10),  # a reload
            *_visit("s4", ["/"], 11),  # nothing after the entry page
        ],
    )
    token, p = tenant["admin_token"], tenant["project_id"]
    vars_ = {"p": p, "days": 7, "limit": 5}
    got = (await ok(api, token, _SUGGESTIONS, vars_))["journeySuggestions"]
    # After the entry page: s1 /products→/cart→/checkout, s2 and s3 /products→/cart; 4 anchored segments.
    assert [(s["pages"], s["sessions"], s["share"]) for s in got] == [
        (["/products", "/cart"], 2, 0.5),
        (["/products", "/cart", "/checkout"], 1, 0.25),
    ]
    assert got[0]["steps"][0] == {"event_type": "page.view", "page_path": "/products", "page_path_mode": "exact"}
    # Defining the first suggestion removes it (and only it) from the answer.
    steps = [{"name": f"step {i}", "matcher": m} for i, m in enumerate(got[0]["steps"], start=1)]
    await ok(api, token, DEFINE, {"p": p, "steps": steps})
    after = (await ok(api, token, _SUGGESTIONS, vars_))["journeySuggestions"]
    assert [s["pages"] for s in after] == [["/products", "/cart", "/checkout"]]

    retention_vars = {"p": p, "period": "DAY", "periods": 1, "from": day(-1, 0).isoformat()}
    via_graphql = await ok(api, token, _RETENTION, retention_vars)
    backends = Backends(
        QueryApiSettings(
            clickhouse_url=servers.clickhouse_url, postgres_dsn=servers.postgres_dsn, redis_url=servers.redis_url
        )
    )
    try:
        async with McpClient(build_mcp_server(backends, stdio_token=token)) as client:
            mcp_suggestions = _payload(await client.call_tool("pg.get_suggestions", {"project_id": p, "days": 7}))
            mcp_retention = _payload(
                await client.call_tool(
                    "pg.get_retention",
                    {"project_id": p, "period": "DAY", "periods": 1, "date_from": day(-1, 0).isoformat()},
                )
            )
    finally:
        await backends.close()
    assert mcp_suggestions == {"journeySuggestions": after}
    assert mcp_retention == via_graphql
    cohorts = via_graphql["retention"]["cohorts"]
    assert cohorts[0]["size"] == 4 and cohorts[0]["cells"][0]["count"] == 4  # all four users start yesterday
