"""One contract suite for the admission store (rate limit + dedup claims), run on real Redis and the fake."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ingest_gateway.admission import (
    AdmissionStore,
    AdmissionUnavailable,
    MemoryAdmission,
    RedisAdmission,
    Verdict,
    event_key,
    token_key,
)

pytestmark = pytest.mark.integration
NOW = 1_795_000_000_000
UNLIMITED = {"rate_per_s": 0.0, "burst": 1000}


@pytest.fixture(params=["redis", "memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AdmissionStore]:
    if request.param == "memory":
        yield MemoryAdmission()
        return
    client = aioredis.from_url(request.getfixturevalue("redis_url"))
    store = RedisAdmission(client, timeout_s=2)
    try:
        yield store
    finally:
        await store.aclose()
        await client.aclose()


def project() -> str:
    return f"p-{secrets.token_hex(6)}"


async def admit(store: AdmissionStore, p: str, ids: list[str], token: str = "t1", now: int = NOW, **limit: float):
    lim = {**UNLIMITED, **limit}
    return await store.admit(
        p,
        rate_per_s=lim["rate_per_s"],
        burst=int(lim["burst"]),
        cost=len(ids),
        event_ids=ids,
        token=token,
        window_s=3600,
        now_ms=now,
    )


async def test_claim_confirm_seen_pending(store: AdmissionStore) -> None:
    p = project()
    first = await admit(store, p, ["a", "b"], token="t1")
    assert first.granted and list(first.verdicts) == [Verdict.NEW, Verdict.NEW]
    concurrent = await admit(store, p, ["a", "c"], token="t2")  # "a" is still being published by t1
    assert list(concurrent.verdicts) == [Verdict.PENDING, Verdict.NEW]
    await store.confirm(p, "t2", 60)  # t2 was acknowledged: "a" and "c" now count as seen
    again = await admit(store, p, ["a", "b", "c"], token="t3")
    assert list(again.verdicts) == [Verdict.SEEN, Verdict.PENDING, Verdict.SEEN]  # "b": t1 never confirmed
    await store.confirm(p, "t3", 60)
    assert list((await admit(store, p, ["b"], token="t4")).verdicts) == [Verdict.SEEN]


async def test_failed_publish_leaves_nothing_seen(store: AdmissionStore) -> None:
    p = project()
    await admit(store, p, ["a"], token="failed")  # published, not acknowledged: never confirmed
    retry = await admit(store, p, ["a"], token="retry")
    assert list(retry.verdicts) == [Verdict.PENDING]  # published again
    await store.confirm(p, "retry", 60)
    assert list((await admit(store, p, ["a"], token="later")).verdicts) == [Verdict.SEEN]


async def test_projects_are_separate(store: AdmissionStore) -> None:
    p, q = project(), project()
    await admit(store, p, ["a"], token="t1")
    await store.confirm(p, "t1", 60)
    assert list((await admit(store, q, ["a"])).verdicts) == [Verdict.NEW]


async def test_token_bucket(store: AdmissionStore) -> None:
    p = project()
    limit = {"rate_per_s": 100.0, "burst": 200}
    assert (await admit(store, p, [f"e{i}" for i in range(150)], **limit)).granted
    denied = await admit(store, p, [f"f{i}" for i in range(100)], now=NOW + 100, **limit)  # 50 + 10 tokens
    assert not denied.granted and denied.retry_after_s == pytest.approx(0.4, abs=0.011)
    assert list(denied.verdicts) == []
    granted = await admit(store, p, [f"f{i}" for i in range(100)], now=NOW + 500, **limit)  # 50 + 50
    assert granted.granted and list(granted.verdicts) == [Verdict.NEW] * 100  # nothing was claimed when denied
    assert not (await admit(store, p, ["g"], now=NOW + 500, **limit)).granted


async def test_keys_live_for_the_window(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        store = RedisAdmission(client)
        p = project()
        await store.admit(p, rate_per_s=0, burst=0, cost=1, event_ids=["a"], token="t1", window_s=600, now_ms=NOW)
        assert await client.get(event_key(p, "a")) == b"t1"
        assert 590 < await client.ttl(event_key(p, "a")) <= 600
        await store.confirm(p, "t1", 600)
        assert 590 < await client.ttl(token_key(p, "t1")) <= 600
    finally:
        await client.aclose()


async def test_unreachable_redis_raises_fast_then_skips() -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = RedisAdmission(client, timeout_s=0.5, cooldown_s=30)
    try:
        with pytest.raises(AdmissionUnavailable):
            await admit(store, project(), ["a"])
        with pytest.raises(AdmissionUnavailable, match="skipped"):
            await admit(store, project(), ["a"])
    finally:
        await client.aclose()


async def test_redis_pipe_loads_the_script_and_reconnects(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    store = RedisAdmission(client, timeout_s=2)
    try:
        assert store._pipe is not None  # plain TCP: the pipe is used
        p = project()
        await client.script_flush()  # EVALSHA answers NOSCRIPT: the script is sent with EVAL
        first = await admit(store, p, ["a", "b"])
        assert first.granted and list(first.verdicts) == [Verdict.NEW, Verdict.NEW]
        store._pipe.reset()  # a dropped connection: the next command connects again
        await store.confirm_many([(p, "t1", 60), (project(), "other", 60)])
        again = await admit(store, p, ["a", "c"], token="t2")
        assert list(again.verdicts) == [Verdict.SEEN, Verdict.NEW]
        conn = store._pipe._conn
        assert conn is not None and conn.transport is not None
        host, port = conn.transport.get_extra_info("sockname")[:2]
        assert await client.client_kill_filter(addr=f"{host}:{port}") == 1  # the server drops the pipe
        await asyncio.sleep(0.05)
        third = await admit(store, p, ["c", "d"], token="t3")  # on a new connection
        assert list(third.verdicts) == [Verdict.PENDING, Verdict.NEW]  # t2 never confirmed
    finally:
        await store.aclose()
        await client.aclose()
