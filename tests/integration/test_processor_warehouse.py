"""The warehouse sink's insert deduplication token: the same batch inserted again (a retry after an
ambiguous failure, or a replay with the same content) adds no rows, even before any merge; another
batch is inserted (and its duplicate events collapse under FINAL)."""

from __future__ import annotations

import uuid

import pytest

from productgraph.connections import clickhouse_client
from schemas.records import EventRecord
from stream_processors.sinks import ClickHouseEventSink
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
