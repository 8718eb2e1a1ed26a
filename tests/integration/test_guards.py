"""Guard rails of the GraphQL API over real servers: document limits, the per-token rate limit (Redis), and
ClickHouse reads that are cancelled on the server when they run out of time or their caller goes away."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from strawberry.extensions.validation_cache import _get_validate_cache

from productgraph.admin import bootstrap_org
from productgraph.connections import clickhouse_client
from query_api.app import create_app
from query_api.guards import CACHED_DOCUMENTS
from query_api.guards.limits import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from query_api.settings import QueryApiSettings
from query_api.tenant_scope import TENANT_FILTER, QueryTimeout, Tenant, scoped_query
from tests.conftest import Servers

pytestmark = pytest.mark.integration

RATE, BURST = 2.0, 4


@pytest.fixture(scope="module")
async def guarded(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a small per-token bucket, so the limit is reached in a handful of requests."""
    settings = QueryApiSettings(
        clickhouse_url=servers.clickhouse_url,
        postgres_dsn=servers.postgres_dsn,
        redis_url=servers.redis_url,
        token_cache_ttl_s=0.0,
        query_rate_limit_per_s=RATE,
        query_rate_limit_burst=BURST,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


def _fresh_token(servers: Servers) -> str:
    slug = f"g{secrets.token_hex(5)}"
    return bootstrap_org(servers.postgres_dsn, "Guards", slug, "App", slug).admin_token


async def _post(client: httpx.AsyncClient, token: str, query: str) -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})


def _messages(resp: httpx.Response) -> list[str]:
    return [e["message"] for e in resp.json().get("errors") or []]


@pytest.mark.parametrize("attempt", ["first", "again"])  # again: parse and validation come from the caches
async def test_document_limits(guarded: httpx.AsyncClient, servers: Servers, attempt: str) -> None:
    token = _fresh_token(servers)
    # Depth: the schema has no cycles today, so a too-deep document also names unknown fields; the depth
    # rule reports on its own, before anything runs.
    deep = "{ organization " + "{ id x " * (MAX_DEPTH + 1) + "}" * (MAX_DEPTH + 1) + " }"
    resp = await _post(guarded, token, deep)
    assert resp.status_code == 200
    assert f"'anonymous' exceeds maximum operation depth of {MAX_DEPTH}" in _messages(resp)
    assert resp.json()["data"] is None

    aliases = " ".join(f"a{i}: organization {{ id }}" for i in range(MAX_ALIASES + 1))
    resp = await _post(guarded, token, "{ " + aliases + " }")
    assert _messages(resp) == [f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"]
    assert resp.json()["data"] is None
    allowed = " ".join(f"a{i}: organization {{ id }}" for i in range(MAX_ALIASES))
    resp = await _post(guarded, token, "{ " + allowed + " }")
    assert not _messages(resp) and len(resp.json()["data"]) == MAX_ALIASES

    huge = "{ " + "organization { id } " * (MAX_TOKENS // 4) + "}"
    resp = await _post(guarded, token, huge)
    assert _messages(resp) == [f"Syntax Error: Document contains more than {MAX_TOKENS} tokens. Parsing aborted."]

    # The same documents again are validated from the cache (its key holds the limit rules: they must be the
    # same classes on every request), with the same answers as above.
    validate = _get_validate_cache(CACHED_DOCUMENTS)
    hits = validate.cache_info().hits
    for document in (deep, "{ " + aliases + " }", "{ " + allowed + " }"):
        resp = await _post(guarded, token, document)
        assert resp.status_code == 200 and (resp.json()["data"] is None) == (document != "{ " + allowed + " }")
    assert validate.cache_info().hits == hits + 3


async def test_rate_limit_per_token_then_recovers(guarded: httpx.AsyncClient, servers: Servers) -> None:
    noisy, quiet = _fresh_token(servers), _fresh_token(servers)
    answers = [await _post(guarded, noisy, "{ organization { id } }") for _ in range(BURST + 2)]
    statuses = [r.status_code for r in answers]
    # The bucket refills at RATE/s while the requests run, so at most one more than BURST gets through.
    assert statuses[:BURST] == [200] * BURST and statuses[-1] == 429, statuses
    refused = answers[-1]
    assert refused.headers["Retry-After"] == "1"
    (error,) = refused.json()["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 1}
    assert error["message"].startswith("rate limit exceeded: at most 2 requests/s (burst 4) per access token")
    assert refused.json()["data"] is None
    # Another token is not affected; the noisy one is admitted again once its bucket refilled.
    assert (await _post(guarded, quiet, "{ organization { id } }")).status_code == 200
    await asyncio.sleep(1 / RATE + 0.1)
    again = await _post(guarded, noisy, "{ organization { id } }")
    assert again.status_code == 200 and not _messages(again)


# A read that would run for minutes: a scalar subquery over a huge numbers() range, inside a tenant read.
SLOW = (
    "SELECT (SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) % 7 = 3 AND {mark:String} != '') "
    f"+ count() FROM events WHERE {TENANT_FILTER}"
)


def _running(ch: Client, mark: str) -> int:
    """Queries of ours on the server whose SQL carries ``mark`` (bound, so this query itself cannot match)."""
    rows = ch.query(
        "SELECT count() FROM system.processes WHERE position(query, {m:String}) > 0 AND query_id != queryID()",
        parameters={"m": mark},
    ).result_rows
    return int(rows[0][0])


async def _until(predicate: Callable[[], bool], within_s: float) -> float:
    """Seconds until ``predicate`` holds (polled every 50 ms), or fail after ``within_s``."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within_s} s")


async def test_clickhouse_timeout_cancels_the_server_query(tenant: dict[str, str], servers: Servers) -> None:
    ch, probe = clickhouse_client(servers.clickhouse_url), clickhouse_client(servers.clickhouse_url)
    t = Tenant(tenant["org_id"], tenant["project_id"])
    mark = f"guard-{secrets.token_hex(6)}"
    sql = SLOW.replace("{mark:String}", f"'{mark}'")  # a literal, so that system.processes shows it
    try:
        start = time.monotonic()
        with pytest.raises(QueryTimeout, match=r"query timed out after 1 s and was cancelled"):
            await scoped_query(ch, t, sql, timeout_s=1.0)
        assert time.monotonic() - start < 3.5
        await _until(lambda: _running(probe, mark) == 0, 2.0)
    finally:
        ch.close()
        probe.close()


async def test_abandoned_clickhouse_read_is_killed(tenant: dict[str, str], servers: Servers) -> None:
    """A caller that goes away (task cancelled: client disconnect, request timeout) takes its query along,
    long before the query's own time budget (60 s here) would end it."""
    ch, probe = clickhouse_client(servers.clickhouse_url), clickhouse_client(servers.clickhouse_url)
    t = Tenant(tenant["org_id"], tenant["project_id"])
    mark = f"guard-{secrets.token_hex(6)}"
    sql = SLOW.replace("{mark:String}", f"'{mark}'")
    try:
        task = asyncio.create_task(scoped_query(ch, t, sql, timeout_s=60.0))
        await _until(lambda: _running(probe, mark) == 1, 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gone_after = await _until(lambda: _running(probe, mark) == 0, 3.0)
        assert gone_after < 3.0
    finally:
        ch.close()
        probe.close()
