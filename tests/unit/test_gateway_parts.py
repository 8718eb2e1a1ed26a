"""The gateway's pure parts: project policy, CORS headers, the key cache, zstd bodies, bench events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import zstandard

from ingest_gateway.body import BodyTooLarge, read_body
from ingest_gateway.cors import cors_headers, preflight_headers
from ingest_gateway.keys import KeyCache
from ingest_gateway.policy import project_policy
from productgraph.bench.ingest import bench_events
from schemas.fields import FIELDS
from schemas.ingest import IngestContext, parse_rfc3339_ms, request_skew_ms, validate_events

DEFAULTS = {"rate_per_s": 10_000.0, "burst": 0, "dedup_window_s": 86_400}


def test_policy_defaults_overrides_and_backstops() -> None:
    p = project_policy({}, **DEFAULTS)
    assert (p.rate_per_s, p.burst, p.dedup_window_s, p.cors_origins) == (10_000, 20_000, 86_400, None)
    p = project_policy(
        {"rate_limit_per_s": 100, "dedup_window_s": 0, "cors_origins": ["https://a.example/", 5]}, **DEFAULTS
    )
    assert (p.rate_per_s, p.burst, p.dedup_window_s) == (100, 1000, 0)  # burst: at least one full batch
    assert p.origin_allowed("https://a.example") and not p.origin_allowed("https://b.example")
    assert project_policy({"cors_origins": ["*"]}, **DEFAULTS).cors_origins is None
    junk = project_policy({"rate_limit_per_s": "fast", "dedup_window_s": -3, "cors_origins": "*"}, **DEFAULTS)
    assert (junk.rate_per_s, junk.dedup_window_s, junk.cors_origins) == (10_000, 86_400, None)


def test_cors_headers() -> None:
    assert cors_headers(None) == {}
    h = cors_headers("https://a.example")
    assert h["Access-Control-Allow-Origin"] == "https://a.example" and h["Access-Control-Allow-Credentials"] == "true"
    assert h["Vary"] == "Origin"
    pre = preflight_headers("https://a.example")
    assert pre["Access-Control-Allow-Origin"] == "https://a.example"
    assert "X-PG-API-Key" in pre["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in preflight_headers(None)


async def test_key_cache_single_flight_and_failures_not_cached() -> None:
    calls = 0
    fail = True

    async def lookup(key: str) -> str | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if fail:
            raise ConnectionError("down")
        return key.upper()

    cache: KeyCache[str] = KeyCache(lookup, ttl_s=30)
    results = await asyncio.gather(*(cache.get("k") for _ in range(10)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, ConnectionError) for r in results)
    fail = False
    assert await cache.get("k") == "K" and calls == 2
    assert await cache.get("k") == "K" and calls == 2


async def _chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_zstd_body_and_bomb() -> None:
    body = b'{"events": []}' * 1000
    assert await read_body(_chunks(zstandard.ZstdCompressor().compress(body)), "zstd", 100_000) == body
    bomb = zstandard.ZstdCompressor(level=19).compress(b"0" * 30_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(BodyTooLarge):
        await read_body(_chunks(bomb), "zstd", 1_000_000)
    with pytest.raises(ValueError, match="invalid zstd"):
        await read_body(_chunks(b"definitely not zstd"), "zstd", 1000)


def test_sent_at_skew_and_go_zero_time() -> None:
    assert request_skew_ms("2026-11-25T10:00:00Z", parse_rfc3339_ms("2026-11-25T10:00:02Z") or 0) == 2000
    assert request_skew_ms(None, 0) is None and request_skew_ms("later", 0) is None
    assert request_skew_ms("0001-01-01T00:00:00Z", 0) is None


def test_bench_events_are_valid_and_cover_every_field() -> None:
    events = [{**e, "event_id": str(i)} for i, e in enumerate(bench_events("shop", 200))]
    records, errors = validate_events(events, IngestContext("o", "p", "shop", int(time.time() * 1000)))
    assert errors == [] and len(records) == 200
    keys = {k for e in events for k in e}
    assert {f.name for f in FIELDS} <= keys and len(keys) >= 40
