"""Request body limits, migration files, the events table vs the field table, demo traffic (pure)."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingest_gateway.body import BodyTooLarge, UnsupportedEncoding, read_body
from ingest_gateway.keys import KeyCache
from productgraph.db import KeyInfo
from productgraph.demo import demo_events
from productgraph.migrate import DEPLOY_DIR, load_migrations, split_statements
from schemas.ingest import IngestContext, validate_event
from schemas.records import EventRecord
from schemas.rows import EVENT_COLUMNS, event_row


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_plain_and_gzip_bodies_within_limit() -> None:
    body = b'{"events": []}' * 100
    assert await read_body(chunks(body), "", 10_000) == body
    assert await read_body(chunks(gzip.compress(body)), "gzip", 10_000) == body


async def test_gzip_bomb_stops_at_limit_without_inflating() -> None:
    bomb = gzip.compress(b"0" * 50_000_000)  # ~50 KB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(BodyTooLarge):
        await read_body(chunks(bomb), "gzip", 10 * 1024 * 1024)


async def test_plain_body_over_limit_and_bad_encodings() -> None:
    with pytest.raises(BodyTooLarge):
        await read_body(chunks(b"x" * 2000), "identity", 1000)
    with pytest.raises(UnsupportedEncoding):
        await read_body(chunks(b"x"), "br", 1000)
    with pytest.raises(ValueError, match="invalid gzip"):
        await read_body(chunks(b"not gzip at all"), "gzip", 1000)


async def test_key_cache_ttl_and_negative_entries() -> None:
    calls: list[str] = []
    info = KeyInfo("p", "o", "slug", {})

    async def lookup(key: str) -> KeyInfo | None:
        calls.append(key)
        return info if key == "good" else None

    cache = KeyCache(lookup, ttl_s=30)
    assert await cache.get("good", now=0) is info
    assert await cache.get("good", now=29) is info
    assert await cache.get("bad", now=0) is None and await cache.get("bad", now=1) is None
    assert calls == ["good", "bad"]
    await cache.get("good", now=31)  # expired: looked up again (a revoked key stops within the TTL)
    assert calls == ["good", "bad", "good"]


def test_migration_files_are_numbered_and_split() -> None:
    for db in ("postgres", "clickhouse"):
        migs = load_migrations(DEPLOY_DIR / db)
        assert migs and [m.version for m in migs] == sorted(m.version for m in migs)
    assert split_statements("-- c\nCREATE TABLE a (x Int8);\nCREATE TABLE b (y Int8);\n") == [
        "CREATE TABLE a (x Int8)",
        "CREATE TABLE b (y Int8)",
    ]


def test_events_migration_has_every_column_of_the_row_mapping() -> None:
    ddl = (DEPLOY_DIR / "clickhouse" / "0001_events.sql").read_text()
    declared = re.findall(r"^\s{4}([a-z_]+) ", ddl, flags=re.M)
    assert list(EVENT_COLUMNS) == declared[: len(EVENT_COLUMNS)]
    rec = validate_event(
        0,
        {
            "event_id": "e",
            "project_id": "p",
            "session.id": "s",
            "event.type": "error",
            "event.timestamp": "2025-01-01T00:00:00Z",
            "error.message": "boom",
            "metadata": {"n": 1, "s": "x"},
        },
        IngestContext("o", "p", "p", 1_735_689_600_000),
    )
    assert isinstance(rec, EventRecord)
    row = dict(zip(EVENT_COLUMNS, event_row(rec), strict=True))
    assert row["error_message"] == "boom" and row["page_path"] == "" and row["api_status_code"] is None
    assert row["metadata"] == {"n": "1", "s": "x"}


def test_demo_events_are_valid_deterministic_and_ordered() -> None:
    a = demo_events("shop", 500, seed=3)
    b = demo_events("shop", 500, seed=3)
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b] and len(a) == 500
    ctx = IngestContext("o", "p", "shop", 4_102_444_800_000)
    assert all(isinstance(validate_event(i, e, ctx), EventRecord) for i, e in enumerate(a))
    by_session: dict[str, list[str]] = {}
    for e in a:
        by_session.setdefault(e["session.id"], []).append(e["event.timestamp"])
    assert all(ts == sorted(ts) and len(set(ts)) == len(ts) for ts in by_session.values())


def test_no_module_reads_environ_outside_settings() -> None:
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for pkg in ("schemas", "ingest_gateway", "stream_processors", "query_api")
        for p in (root / pkg).rglob("*.py")
        if "os.environ" in p.read_text() or "getenv" in p.read_text()
    ]
    assert offenders == []
