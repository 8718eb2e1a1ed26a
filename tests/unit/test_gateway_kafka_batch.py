"""The gateway's Kafka record batch, read back with aiokafka's own v2 decoder (pure, no servers), and the
bench's acceptance verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.util import encode_varint

from ingest_gateway.kafka_batch import BATCH_OVERHEAD, KafkaRecordBatch, varint
from productgraph.bench.ingest import acceptance


def _decode(raw: bytes) -> DefaultRecordBatch:
    batch = DefaultRecordBatch(bytearray(raw))
    assert batch.validate_crc()
    return batch


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 8191, 8192, 300_000, -(2**31), 2**40])
def test_varint_is_kafkas_zigzag_varint(value: int) -> None:
    expected = bytearray()
    encode_varint(value, expected.append)
    assert varint(value) == bytes(expected)


def test_records_read_back_with_keys_values_offsets_and_time() -> None:
    batch = KafkaRecordBatch(1 << 20, timestamp_ms=1_700_000_000_123)
    sizes = [0, 1, 127, 128, 8191, 8192, 70_000]  # value lengths around the varint steps
    for i, n in enumerate(sizes):
        assert batch.append(f"p:s-{i}".encode(), bytes([i]) * n)
    assert batch.record_count() == len(sizes)
    raw = batch.build()
    assert len(raw) == batch.size()
    decoded = _decode(raw)
    records = list(decoded)
    assert [r.offset for r in records] == list(range(len(sizes)))
    assert [r.key for r in records] == [f"p:s-{i}".encode() for i in range(len(sizes))]
    assert [r.value for r in records] == [bytes([i]) * n for i, n in enumerate(sizes)]
    assert {r.timestamp for r in records} == {1_700_000_000_123}
    assert all(r.headers == [] for r in records)
    assert decoded.next_offset == len(sizes) and not decoded.is_transactional


def test_same_bytes_as_aiokafkas_builder() -> None:
    ours = KafkaRecordBatch(1 << 20, timestamp_ms=1_700_000_000_000)
    theirs = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, 0, 1 << 20)
    for i in range(300):
        key, value = f"proj:session-{i % 7}".encode(), b"v" * (i * 3)
        assert ours.append(key, value)
        theirs.append(i, 1_700_000_000_000, key, value, [])
    assert ours.build() == bytes(theirs.build())


def test_full_batch_refuses_but_the_first_record_always_fits() -> None:
    batch = KafkaRecordBatch(1000)
    assert batch.append(b"k", b"x" * 5000)  # alone, larger than the limit: still sent
    assert not batch.append(b"k", b"x")
    small = KafkaRecordBatch(BATCH_OVERHEAD + 200)
    count = 0
    while small.append(b"key", b"x" * 40):
        count += 1
    assert count == 4 and small.size() <= BATCH_OVERHEAD + 200
    assert len(list(_decode(small.build()))) == 4


def test_producer_state_and_closing_as_aiokafka_drives_it() -> None:
    batch = KafkaRecordBatch(1 << 20)
    batch.append(b"k", b"v")
    batch.close()
    assert batch.closed() and not batch.append(b"k", b"w")
    batch._set_producer_state(42, 3, 1000)
    first = batch._build()
    assert batch._build() is first  # a retry sends the same bytes
    decoded = _decode(first)
    assert (decoded.producer_id, decoded.producer_epoch, decoded.base_sequence) == (42, 3, 1000)
    batch._set_producer_state(42, 4, 0)  # new epoch after a producer reset: rebuilt
    rebuilt = _decode(batch._build())
    assert rebuilt.producer_epoch == 4 and [(r.key, r.value) for r in rebuilt] == [(b"k", b"v")]


def _report(events_100: int, ceiling: int | None, p99: float | None, rss: float) -> dict[str, Any]:
    phases = [
        {"name": "batch-1", "batch_size": 1, "events_per_s": 900, "gateway_rss_peak_mb": rss - 50},
        {"name": "batch-100", "batch_size": 100, "events_per_s": events_100, "gateway_rss_peak_mb": rss},
    ]
    paced = None if p99 is None else {"events_per_s": 10_000, "p99_ms": p99, "gateway_rss_peak_mb": 90.0}
    return {"phases": phases, "paced": paced, "aiokafka_ceiling": ceiling and {"events_per_s": ceiling}}


def test_acceptance_verdicts() -> None:
    a = acceptance(_report(52_000, 90_000, 12.5, 150.0))
    assert a["share_of_ceiling"] == 0.58 and a["gateway_rss_peak_mb"] == 150.0
    assert a["batch_100_events_per_s_ok"] and a["share_of_ceiling_ok"] and a["paced_p99_ok"] and a["gateway_rss_ok"]
    missed = acceptance(_report(49_999, 110_000, 50.0, 200.0))
    assert missed["share_of_ceiling"] == 0.45
    assert not any(
        missed[k] for k in ("batch_100_events_per_s_ok", "share_of_ceiling_ok", "paced_p99_ok", "gateway_rss_ok")
    )
    assert acceptance(_report(60_000, 0, 10.0, 120.0))["share_of_ceiling_ok"] is None  # the ceiling run failed
    partial = acceptance(_report(60_000, None, None, 120.0))
    assert partial["share_of_ceiling_ok"] is None and partial["paced_p99_ok"] is None and partial["gateway_rss_ok"]
