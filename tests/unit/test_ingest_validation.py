"""The event contract's validation, on hand-written events (pure, no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.fields import EVENT_TYPES
from schemas.ingest import (
    BatchError,
    EventError,
    IngestContext,
    parse_rfc3339_ms,
    validate_batch_shape,
    validate_event,
)
from schemas.records import EventRecord

T0 = 1_764_064_800_000  # 2025-11-25T10:00:00Z
CTX = IngestContext(org_id="org-1", project_id="proj-1", project_slug="shop", received_ms=T0)


def ev(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1",
        "project_id": "proj-1",
        "session.id": "s1",
        "event.type": "page.view",
        "event.timestamp": "2025-11-25T09:59:59.500Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_valid_event_becomes_record_with_times() -> None:
    rec = validate_event(0, ev(**{"page.path": "/cart", "api.status_code": 200}), CTX)
    assert isinstance(rec, EventRecord)
    assert rec.ts_ms == T0 - 500 and rec.client_ts_ms == T0 - 500 and rec.received_ms == T0
    assert rec.fields == {"page.path": "/cart", "api.status_code": 200}
    assert rec.key == b"proj-1:s1"


@pytest.mark.parametrize(
    ("missing", "error"),
    [
        ("event_id", "event_id: required"),
        ("project_id", "project_id: required"),
        ("session.id", "session.id: required"),
        ("event.type", "event.type: required"),
    ],
)
def test_first_missing_required_field_is_reported(missing: str, error: str) -> None:
    result = validate_event(3, ev(**{missing: ...}), CTX)
    assert result == EventError(3, error)


def test_only_first_missing_field_in_seed_order() -> None:
    assert validate_event(0, {"event.type": "page.view"}, CTX) == EventError(0, "event_id: required")


def test_product_id_alias_and_slug() -> None:
    rec = validate_event(0, ev(project_id=..., product_id="shop"), CTX)
    assert isinstance(rec, EventRecord) and rec.project_id == "proj-1"


def test_foreign_project_rejected() -> None:
    assert validate_event(0, ev(project_id="other"), CTX) == EventError(
        0, "project_id: does not match the API key's project"
    )


def test_all_event_types_accepted_and_unknown_rejected() -> None:
    assert len(EVENT_TYPES) == 18
    for t in EVENT_TYPES:
        assert isinstance(validate_event(0, ev(**{"event.type": t}), CTX), EventRecord)
    assert validate_event(0, ev(**{"event.type": "foo"}), CTX) == EventError(0, "event.type: unknown type 'foo'")


def test_missing_timestamp_filled_and_flagged_malformed_rejected() -> None:
    rec = validate_event(0, ev(**{"event.timestamp": ...}), CTX)
    assert isinstance(rec, EventRecord) and rec.ts_filled and rec.ts_ms == T0 and rec.client_ts_ms is None
    bad = validate_event(0, ev(**{"event.timestamp": "yesterday"}), CTX)
    assert bad == EventError(0, "event.timestamp: invalid RFC3339 timestamp")


def test_skew_correction_and_future_limit() -> None:
    ctx = IngestContext("o", "proj-1", "shop", T0, skew_ms=60_000)
    rec = validate_event(0, ev(), ctx)
    assert isinstance(rec, EventRecord) and rec.ts_ms == T0 - 500 + 60_000 and rec.client_ts_ms == T0 - 500
    future = validate_event(0, ev(**{"event.timestamp": "2025-11-26T09:00:01Z"}), CTX)
    assert future == EventError(0, "event.timestamp: more than 23 h in the future")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("api.status_code", "200", "must be a number"),
        ("api.status_code", 200.5, "must be an integer"),
        ("ui.scroll.position", 1.5, "must be between 0 and 1"),
        ("duration_ms", -1, "must not be negative"),
        ("page.path", 5, "must be a string"),
        ("ui.state.change_type", "explode", "must be one of delete, merge, reset, set, update"),
        ("api.method", "X" * 11, "longer than 10 characters"),
        ("event.sequence", True, "must be a number"),
    ],
)
def test_field_type_errors(field: str, value: Any, reason: str) -> None:
    assert validate_event(0, ev(**{field: value}), CTX) == EventError(0, f"{field}: {reason}")


def test_float_durations_accepted_and_unknown_keys_kept() -> None:
    rec = validate_event(0, ev(**{"duration_ms": 12.5, "sdk.new_field": "x", "nested": {"a": 1}}), CTX)
    assert isinstance(rec, EventRecord)
    assert rec.fields["duration_ms"] == 12.5
    assert rec.extra == {"sdk.new_field": "x", "nested": '{"a":1}'}


def test_oversized_event_and_bad_metadata() -> None:
    assert validate_event(0, ev(metadata={"blob": "x" * 110_000}), CTX) == EventError(0, "event: larger than 100 KB")
    assert validate_event(0, ev(metadata=[1]), CTX) == EventError(0, "metadata: must be an object")
    assert validate_event(0, "nope", CTX) == EventError(0, "event: must be an object")


def test_batch_shape() -> None:
    assert validate_batch_shape({"events": []}) == []
    for body in ([], {"events": {}}, {"nope": 1}, "x"):
        with pytest.raises(BatchError):
            validate_batch_shape(body)
    with pytest.raises(BatchError, match="batch too large"):
        validate_batch_shape({"events": [{}] * 1001})
    assert len(validate_batch_shape({"events": [{}] * 1000})) == 1000


def test_rfc3339_forms() -> None:
    assert parse_rfc3339_ms("2025-11-25T10:00:00Z") == T0
    assert parse_rfc3339_ms("2025-11-25T10:00:00.000000123Z") == T0
    assert parse_rfc3339_ms("2025-11-25T12:00:00+02:00") == T0
    assert parse_rfc3339_ms("2025-11-25") is None
    assert parse_rfc3339_ms(12345) is None


def test_record_round_trip_and_decode_errors() -> None:
    rec = validate_event(0, ev(metadata={"plan": "pro"}), CTX)
    assert isinstance(rec, EventRecord)
    assert EventRecord.decode(rec.encode()) == rec
    from schemas.records import RecordDecodeError

    for raw in (None, b"not json", b"[]", b'{"v": 1}', b'{"v": 2}'):
        with pytest.raises(RecordDecodeError):
            EventRecord.decode(raw)
