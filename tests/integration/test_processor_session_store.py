"""One contract for both session stores (Redis, and the in-memory fake the unit tests use), plus the Redis
store's cache: a session another writer changed is read again, never served stale."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from schemas.sessions import LiveEvent, events_key, live_key
from stream_processors.session_store import (
    MemorySessionStore,
    RealtimeUpdate,
    RedisSessionStore,
    SessionKey,
    SessionStore,
    SessionWrite,
)
from stream_processors.sessionize import Ledger, SessionPolicy, advance
from tests.conftest import Servers

pytestmark = pytest.mark.integration
POLICY = SessionPolicy(timeout_ms=10, max_length_ms=1000, late_horizon_ms=100)


@pytest.fixture
async def redis_client(servers: Servers) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_client: aioredis.Redis) -> SessionStore:
    return MemorySessionStore() if request.param == "memory" else RedisSessionStore(redis_client, chunk=2)


def _key() -> SessionKey:
    return SessionKey(str(uuid.uuid4()), str(uuid.uuid4()), "s-" + uuid.uuid4().hex[:6])


async def test_the_session_store_contract(store: SessionStore) -> None:
    keys = [_key() for _ in range(3)]
    loaded, clock = await store.load(keys)
    assert all(loaded[k].ledger is None and not loaded[k].events for k in keys)
    events = [LiveEvent("a", 0, page="/a", event_type="page.view", user_id="u"), LiveEvent("b", 5, 1)]
    first = advance(Ledger(), {}, events, POLICY, version_floor=clock)
    await store.save([SessionWrite(k, first, 60, POLICY.timeout_ms) for k in keys])
    loaded, clock2 = await store.load(keys)
    assert clock2 >= clock
    assert all(
        loaded[k].ledger == first.ledger and dict(loaded[k].events) == {"a": events[0], "b": events[1]} for k in keys
    )
    # seal the first segment with a later event: its events leave the store
    later = advance(first.ledger, loaded[keys[0]].events, [LiveEvent("c", 300)], POLICY, version_floor=clock2)
    assert later.dropped == {"a", "b"}
    await store.save([SessionWrite(keys[0], later, 60, POLICY.timeout_ms)])
    loaded, _ = await store.load(keys[:1])
    assert loaded[keys[0]].ledger == later.ledger and set(loaded[keys[0]].events) == {"c"}
    # events without a ledger are replaced, not added to
    reset = advance(Ledger(), {}, [LiveEvent("d", 1)], POLICY)
    await store.save([SessionWrite(keys[1], reset, 60, POLICY.timeout_ms, reset_events=True)])
    loaded, _ = await store.load(keys[1:2])
    assert set(loaded[keys[1]].events) == {"d"}
    assert await store.ping()


async def _realtime_state(store: SessionStore, redis: aioredis.Redis, keys: list[str]) -> dict[str, object]:
    """The counters and active sets of ``keys``, as either store holds them."""
    if isinstance(store, MemorySessionStore):
        out: dict[str, object] = {k: store.counters[k] for k in keys if k in store.counters}
        out.update({k: sorted(store.active[k].items()) for k in keys if k in store.active})
        return out
    found: dict[str, object] = {}
    for k in keys:
        kind = _text(await redis.type(k))
        if kind == "string":
            found[k] = int(_text(await redis.get(k)))
        elif kind == "zset":
            pairs: list[Any] = await redis.zrange(k, 0, -1, withscores=True)
            found[k] = [(_text(m), int(sc)) for m, sc in pairs]
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def test_journey_entries_and_realtime_updates_are_saved_with_the_session(
    store: SessionStore, redis_client: aioredis.Redis
) -> None:
    key, p = _key(), uuid.uuid4().hex
    counter, zset = f"rt:{p}:epm:29000000", f"rt:{p}:active_sessions"
    now_ms = 1_800_000_000_000
    u = advance(Ledger(), {}, [LiveEvent("a", 0, journeys=("j/1",))], POLICY, 1)
    rt = RealtimeUpdate(
        counters=((counter, 2, 4_000_000_000),),
        active=((zset, "fresh", now_ms - 1000), (zset, "stale", now_ms - 11 * 60_000)),
    )
    await store.save([SessionWrite(key, u, 60, POLICY.timeout_ms, journey_entries=frozenset({"1|j|1|0"}), realtime=rt)])
    second = RealtimeUpdate(counters=((counter, -1, 4_000_000_000),), active=((zset, "fresh", now_ms - 5000),))
    # each save is a new write (a new version): one with the version already stored is a retry, skipped
    u = replace(u, ledger=replace(u.ledger, version=2))
    await store.save([SessionWrite(key, u, 60, POLICY.timeout_ms, realtime=second)], now_ms=now_ms)
    loaded, _ = await store.load([key])
    assert loaded[key].journey_entries == frozenset() and loaded[key].events["a"].journeys == ("j/1",)
    # INCRBY 2 then -1; ZADD GT keeps the newer score; the trim drops members older than 10 minutes
    assert await _realtime_state(store, redis_client, [counter, zset]) == {counter: 1, zset: [("fresh", now_ms - 1000)]}
    u = replace(u, ledger=replace(u.ledger, version=3))
    await store.save([SessionWrite(key, u, 60, POLICY.timeout_ms, journey_entries=frozenset({"1|j|1|0", "1|j|2|5"}))])
    loaded, _ = await store.load([key])
    assert loaded[key].journey_entries == {"1|j|1|0", "1|j|2|5"}
    if not isinstance(store, MemorySessionStore):
        assert await redis_client.ttl(counter) > 0 and 0 < await redis_client.ttl(zset) <= 3600
    # a count moved away in a later save leaves no key (as if it had moved within one save)
    u = replace(u, ledger=replace(u.ledger, version=4))
    moved = RealtimeUpdate(counters=((counter, -1, 4_000_000_000),))
    await store.save([SessionWrite(key, u, 60, POLICY.timeout_ms, realtime=moved)], now_ms=now_ms)
    assert await _realtime_state(store, redis_client, [counter]) == {}
    if not isinstance(store, MemorySessionStore):
        assert await redis_client.exists(counter) == 0


async def test_redis_layout_live_view_and_ttl(redis_client: aioredis.Redis) -> None:
    store, key = RedisSessionStore(redis_client), _key()
    u = advance(Ledger(), {}, [LiveEvent("a", 1000, event_type="page.view", page="/x", user_id="u1")], POLICY, 7)
    await store.save([SessionWrite(key, u, 90, POLICY.timeout_ms)])
    view = {
        k.decode(): v.decode()
        for k, v in (await redis_client.hgetall(live_key(key.project_id, key.session_id))).items()
    }
    assert view == {
        "event_count": "1",
        "started_ms": "1000",
        "last_ms": "1000",
        "user_id": "u1",
        "current_page": "/x",
        "last_event_type": "page.view",
        "page_views": "1",
        "error_count": "0",
        "segment": "1",
        "closes_at_ms": "1010",
        "segments": "1",
        "sealed": "0",
        "version": "7",
    }
    assert 0 < await redis_client.ttl(live_key(key.project_id, key.session_id)) <= 90
    assert 0 < await redis_client.ttl(events_key(key.project_id, key.session_id)) <= 90


async def test_the_cache_never_serves_a_session_another_writer_changed(redis_client: aioredis.Redis) -> None:
    mine, other, key = RedisSessionStore(redis_client), RedisSessionStore(redis_client), _key()
    loaded, clock = await mine.load([key])
    u = advance(Ledger(), {}, [LiveEvent("a", 0)], POLICY, clock)
    await mine.save([SessionWrite(key, u, 60, POLICY.timeout_ms)])  # cached by `mine`
    theirs, clock = await other.load([key])
    v = advance(theirs[key].ledger or Ledger(), theirs[key].events, [LiveEvent("b", 2)], POLICY, clock)
    await other.save([SessionWrite(key, v, 60, POLICY.timeout_ms)])  # e.g. the partition's next owner
    loaded, _ = await mine.load([key])
    assert set(loaded[key].events) == {"a", "b"} and loaded[key].ledger == v.ledger


async def test_save_and_load_scripts_keep_edge_cases_exact(redis_client: aioredis.Redis) -> None:
    """The save script gets a chunk's sessions as one JSON document and the load script answers in one
    reply: empty added/dropped lists, unicode, quotes and control characters in every string, a session of
    thousands of events and more sessions than a chunk come back exactly, from the cache and from Redis."""
    odd = 'ü日本\U0001f600 "q" \\ \t\x00|'
    events = [
        LiveEvent(f"e{i}{odd if i % 3 == 0 else ''}", i, i % 4, 7, i, "page.view", f"/p{odd}{i}", odd, odd, "", odd)
        for i in range(3000)
    ]
    big = _key()
    small = [_key() for _ in range(5)]  # with chunk=2: three save and three load scripts
    first = advance(Ledger(), {}, events, POLICY, 1)
    tiny = [
        advance(Ledger(), {}, [LiveEvent(f"only-{odd}", 5, user_id=odd, page=odd, event_type="page.view")], POLICY, 1)
    ]
    writer = RedisSessionStore(redis_client, chunk=2)
    await writer.save(
        [SessionWrite(big, first, 60, POLICY.timeout_ms)] + [SessionWrite(k, tiny[0], 60, 10) for k in small]
    )
    # nothing added, nothing dropped: only the ledger and live view move (cjson decodes [] as an empty table)
    idle = replace(first, added=(), dropped=frozenset(), ledger=replace(first.ledger, version=2))
    await writer.save([SessionWrite(big, idle, 60, POLICY.timeout_ms, journey_entries=frozenset({f"1|{odd}|1|0"}))])
    for store in (writer, RedisSessionStore(redis_client, chunk=2)):  # cached, then read from Redis
        loaded, _ = await store.load([big, *small])
        assert loaded[big].ledger == idle.ledger and loaded[big].journey_entries == {f"1|{odd}|1|0"}
        assert loaded[big].events == {e.event_id: e for e in events if e.event_id in loaded[big].events}
        assert set(loaded[big].events) == {e.event_id for e in first.added}
        assert all(loaded[k].events == {f"only-{odd}": tiny[0].added[0]} for k in small)
    view = await redis_client.hgetall(live_key(small[0].project_id, small[0].session_id))
    assert view[b"user_id"].decode() == odd and view[b"current_page"].decode() == odd


def _counted_writes(n: int) -> tuple[str, list[SessionKey], list[SessionWrite]]:
    """``n`` new sessions of one event ``e{i}`` each, every write adding 1 to the same per-minute counter."""
    counter = f"rt:{uuid.uuid4().hex}:epm:29000000"
    keys = [_key() for _ in range(n)]
    writes = [
        SessionWrite(k, advance(Ledger(), {}, [LiveEvent(f"e{i}", i)], POLICY, 100 + i), 60, 10,
                     realtime=RealtimeUpdate(counters=((counter, 1, 4_000_000_000),)))
        for i, k in enumerate(keys)
    ]  # fmt: skip
    return counter, keys, writes


async def test_a_retried_save_counts_each_chunk_once(redis_client: aioredis.Redis) -> None:
    """A flush retries its whole save after a failure: chunks whose script already ran (before the failure,
    or whose reply was lost) must not add their counter increments again."""
    counter, keys, writes = _counted_writes(3)
    store = RedisSessionStore(redis_client, chunk=1)
    await store.save(writes[:2])  # the first two chunks ran, then the connection failed
    await store.save(writes)  # the retry
    await store.save(writes)  # and one more whose reply was lost
    assert int(await redis_client.get(counter)) == 3
    loaded, _ = await RedisSessionStore(redis_client).load(keys)
    assert [set(loaded[k].events) for k in keys] == [{"e0"}, {"e1"}, {"e2"}]


async def test_a_save_with_chunks_in_flight_fails_whole_and_its_retry_counts_each_chunk_once(
    redis_client: aioredis.Redis,
) -> None:
    """Up to ``window`` chunk scripts run at once: when one fails (here a session's events key holds a string,
    so its HSET fails), the save raises, the chunks still waiting are cancelled, and the flush's retry applies
    every chunk's counter increment exactly once, whichever of them had run."""
    counter, keys, writes = _counted_writes(8)
    poisoned = events_key(keys[3].project_id, keys[3].session_id)
    await redis_client.set(poisoned, "not a hash")
    store = RedisSessionStore(redis_client, chunk=1, window=3)
    with pytest.raises(aioredis.ResponseError):
        await store.save(writes)
    assert int(await redis_client.get(counter) or 0) < 8
    await redis_client.delete(poisoned)
    await store.save(writes)  # the retry
    assert int(await redis_client.get(counter)) == 8
    loaded, _ = await RedisSessionStore(redis_client, chunk=3, window=2).load(keys)
    assert [set(loaded[k].events) for k in keys] == [{f"e{i}"} for i in range(8)]
