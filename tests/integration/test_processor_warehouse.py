"""The warehouse sink: its insert deduplication token (the same batch inserted again, a retry after an
ambiguous failure or a replay with the same content, adds no rows, even before any merge; another batch is
inserted and its duplicate events collapse under FINAL); its JSONEachRow lines store exactly the rows a
Native insert of ``event_row`` stores; records ClickHouse would refuse are refused when added."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from productgraph.connections import clickhouse_client
from schemas.fields import EVENT_TYPES, FIELDS, Kind
from schemas.records import EventRecord, Scalar
from schemas.rows import EVENT_COLUMNS, event_row
from stream_processors.sinks import ClickHouseEventSink, MemoryRowWriter
from tests.conftest import Servers
from tests.integration.test_processor_support import record

pytestmark = pytest.mark.integration


async def test_a_repeated_batch_adds_no_rows(servers: Servers) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    ch = clickhouse_client(servers.clickhouse_url)
    batch = [record(org, project, f"e{i}", "s", i) for i in range(20)]

    async def insert(records: list[EventRecord]) -> None:
        sink = ClickHouseEventSink(ch)
        for r in records:
            sink.add(r)
        await sink.flush()

    def count(final: str = "") -> int:
        q = f"SELECT count() FROM events {final} WHERE project_id = {{p:UUID}}"
        return int(ch.query(q, parameters={"p": project}).result_rows[0][0])

    try:
        await insert(batch)
        await insert(batch)
        assert count() == 20, "the second insert of the same batch was dropped, not merged away later"
        await insert([*batch[:10], record(org, project, "extra", "s", 30)])
        assert count() in (31, 21)  # 31 until a background merge collapses the repeated events
        assert count("FINAL") == 21
    finally:
        ch.close()


def _varied_records(org: str, project: str, now_ms: int) -> list[EventRecord]:
    """Every column kind with awkward values: millisecond ends, missing client time, every optional field,
    floats that are easy to round wrongly, int64 limits, escapes and non-ASCII text, nested metadata."""
    rng = random.Random(7)
    out: list[EventRecord] = []
    strings = [
        "plain",
        'quote " and \\ backslash',
        "line\nbreak\ttab",
        "héllo wörld ✓ 日本",
        "",
        "\u0000nul",
        "x" * 300,
    ]
    floats = [0.0, 0.1, 0.30000000000000004, 1e-300, 5e300, 123456789.12345679, 2.5e-8, 1 / 3, 0.999999999999]
    for i in range(300):
        ts = now_ms - rng.randrange(0, 200 * 86_400_000)
        ts -= ts % 1000 - rng.choice([0, 1, 999, 500, rng.randrange(1000)])
        fields: dict[str, Any] = {}
        for spec in FIELDS:
            if rng.random() < 0.5:
                continue
            if spec.kind is Kind.INT:
                fields[spec.name] = rng.choice([0, -1, 7, 2**63 - 1, -(2**63), rng.randrange(-(10**12), 10**12)])
            elif spec.kind is Kind.STRING:
                fields[spec.name] = rng.choice(sorted(spec.choices)) if spec.choices else rng.choice(strings)
            elif spec.kind is Kind.UNIT_FLOAT:
                fields[spec.name] = rng.random()
            else:
                fields[spec.name] = rng.choice([*floats, rng.random() * 10 ** rng.randrange(-5, 9)])
        metadata: dict[str, Any] = (
            {"plan": rng.choice(strings), "n": i, "f": 0.1, "ok": True, "none": None, "list": [1, "a"], "obj": {"k": 1}}
            if i % 3
            else {}
        )
        extra: dict[str, Scalar] = (
            {"device.type": "mobile", "browser": rng.choice(strings), "count": i} if i % 4 == 1 else {}
        )
        out.append(
            EventRecord(
                org_id=org,
                project_id=project,
                event_id=f"e{i}",
                session_id=f"s{i % 17}",
                event_type=rng.choice(sorted(EVENT_TYPES)),
                ts_ms=ts,
                received_ms=ts + rng.randrange(0, 5000),
                client_ts_ms=None if i % 5 == 0 else ts - rng.randrange(0, 3000),
                ts_filled=i % 5 == 0,
                fields=fields,
                metadata=metadata,
                extra=extra,
            )
        )
    out.append(
        replace(out[0], event_id="epoch-and-end", received_ms=4_102_444_799_999, client_ts_ms=0)
    )  # TTL: recent ts
    return out


async def test_json_lines_store_the_same_rows_as_native_inserts(servers: Servers) -> None:
    """The warehouse sink sends JSONEachRow lines; clickhouse-connect's Native insert of event_row is the
    reference: every column of every row must read back identical."""
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    records = _varied_records(org, project, int(time.time() * 1000))
    ch = clickhouse_client(servers.clickhouse_url)
    native, lines = f"events_native_{uuid.uuid4().hex[:8]}", f"events_lines_{uuid.uuid4().hex[:8]}"
    try:
        for table in (native, lines):
            ch.command(f"CREATE TABLE {table} AS events")
        ch.insert(native, [event_row(r) for r in records], column_names=list(EVENT_COLUMNS))
        sink = ClickHouseEventSink(ch, table=lines)
        for r in records:
            sink.add(r)
        await sink.flush()

        def read(table: str) -> list[tuple[Any, ...]]:
            columns = ", ".join(f"toString({c})" if c in ("timestamp", "client_timestamp", "received_at") else c
                                for c in EVENT_COLUMNS)  # fmt: skip
            return [tuple(r) for r in ch.query(f"SELECT {columns} FROM {table} ORDER BY event_id").result_rows]

        expected, got = read(native), read(lines)
        assert len(expected) == len(records)
        for want, row in zip(expected, got, strict=True):
            assert row == want, {c: (w, g) for c, w, g in zip(EVENT_COLUMNS, want, row, strict=True) if w != g}
    finally:
        for table in (native, lines):
            ch.command(f"DROP TABLE IF EXISTS {table}")
        ch.close()


@pytest.mark.parametrize(
    "change",
    [
        {"fields": {"event.sequence": 2**63}},
        {"fields": {"event.sequence": True}},
        {"fields": {"api.duration_ms": "12"}},
        {"fields": {"page.path": 5}},
        {"client_ts_ms": -1},
        {"received_ms": 4_102_444_800_000},
    ],
)
def test_records_clickhouse_would_refuse_are_refused_at_add(change: dict[str, Any]) -> None:
    """Refused at ``add`` (the runner dead-letters the record) instead of failing every flush of its batch."""
    rec = replace(record(str(uuid.uuid4()), str(uuid.uuid4()), "e1", "s", 1), **change)
    sink = ClickHouseEventSink(MemoryRowWriter())
    with pytest.raises(ValueError, match="record: "):
        sink.add(rec)
    assert sink.pending() == 0
