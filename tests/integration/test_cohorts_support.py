"""Shared helpers of the cohort, retention, trends and paths integration tests (this module holds no tests):
an in-process query API over the test servers, event builders with times relative to now, and storage
through the warehouse sink (the production write path)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from productgraph.connections import clickhouse_client
from query_api.app import create_app
from query_api.settings import QueryApiSettings
from schemas.records import EventRecord
from stream_processors.sinks import ClickHouseEventSink
from tests.conftest import Servers
from tests.integration.test_admin_support import error_of, gql, ok

__all__ = ["NOW", "TODAY", "api", "ch", "day", "error_of", "ev", "gql", "ok", "store"]

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
TODAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0)


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


@pytest.fixture(scope="module")
def ch(servers: Servers) -> Client:
    return clickhouse_client(servers.clickhouse_url)


_n = 0


def ev(
    at: datetime,
    session: str,
    user: str | None = None,
    anon: str | None = None,
    etype: str = "custom",
    name: str | None = None,
    meta: dict[str, Any] | None = None,
    eid: str | None = None,
    **fields: Any,
) -> EventRecord:
    """An accepted event at ``at`` (build ``at`` from :data:`TODAY` / :data:`NOW`: the table has a TTL)."""
    global _n
    _n += 1
    f: dict[str, Any] = {k.replace("_", "."): v for k, v in fields.items()}
    if user is not None:
        f["user.id"] = user
    if anon is not None:
        f["user.anonymous_id"] = anon
    if name is not None:
        f["event.name"] = name
    ts = int(at.timestamp() * 1000)
    return EventRecord("o", "p", eid or f"x{_n:06d}", session, etype, ts, ts + 300, fields=f, metadata=meta or {})


async def store(ch: Client, tenant: dict[str, str], records: list[EventRecord]) -> list[EventRecord]:
    """The records under the tenant, stored with the warehouse sink; returns them as stored."""
    out = [dataclasses.replace(r, org_id=tenant["org_id"], project_id=tenant["project_id"]) for r in records]
    sink = ClickHouseEventSink(ch)
    for r in out:
        sink.add(r)
    await sink.flush()
    return out


def day(n: int, hour: float = 10) -> datetime:
    """``n`` days after today (negative: before), at ``hour`` UTC."""
    return TODAY + timedelta(days=n, hours=hour)
