"""Validation of one ``POST /v1/events`` event into an :class:`EventRecord` (pure, no I/O, clock passed in).

Errors follow the seed's ``<field>: <reason>`` form; the first error of an event is reported.  Unknown
keys are kept as extra attributes (newer SDKs must keep working); known fields are type-checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.fields import EVENT_TYPES, FIELDS_BY_NAME, FieldSpec, Kind
from schemas.records import EventRecord, Scalar

__all__ = [
    "MAX_EVENTS_PER_BATCH",
    "BatchError",
    "EventError",
    "IngestContext",
    "parse_rfc3339_ms",
    "validate_batch_shape",
    "validate_event",
]

MAX_EVENTS_PER_BATCH = 1000
MAX_EVENT_BYTES = 100 * 1024
MAX_FUTURE_MS = 23 * 3600 * 1000
MAX_EXTRA_KEYS = 64
MAX_EXTRA_VALUE_LEN = 1024
MAX_ID_LEN = 255
_RESERVED = {"event_id", "project_id", "product_id", "session.id", "event.type", "event.timestamp", "metadata"}


class BatchError(ValueError):
    """The request as a whole is unusable (400); nothing is accepted."""


@dataclass(frozen=True, slots=True)
class EventError:
    index: int
    error: str


@dataclass(frozen=True, slots=True)
class IngestContext:
    """What the gateway knows about a request: the key's project and org, and the request's clock."""

    org_id: str
    project_id: str
    project_slug: str
    received_ms: int
    skew_ms: int = 0  # received_at - sent_at, added to every event timestamp
    fill_missing_timestamp: bool = True


def validate_batch_shape(body: Any) -> list[Any]:
    """The events list of a decoded body, or :class:`BatchError`."""
    if not isinstance(body, dict):
        raise BatchError("body: must be a JSON object with an 'events' list")
    events = body.get("events")
    if not isinstance(events, list):
        raise BatchError("events: must be a list")
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise BatchError(f"events: batch too large ({len(events)} > {MAX_EVENTS_PER_BATCH})")
    return events


def parse_rfc3339_ms(value: Any) -> int | None:
    """Milliseconds since the epoch for an RFC 3339 timestamp string, None when unusable.

    A timestamp without an offset is taken as UTC (browsers' ``toISOString`` always has ``Z``).
    """
    if not isinstance(value, str) or len(value) < 16 or value[10] not in "Tt ":
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def validate_event(index: int, raw: Any, ctx: IngestContext) -> EventRecord | EventError:
    if not isinstance(raw, dict):
        return EventError(index, "event: must be an object")
    if len(orjson.dumps(raw)) > MAX_EVENT_BYTES:
        return EventError(index, "event: larger than 100 KB")
    if "project_id" not in raw and "product_id" in raw:
        raw = {**raw, "project_id": raw["product_id"]}
    for name in ("event_id", "project_id", "session.id", "event.type"):
        value = raw.get(name)
        if value is None or value == "":
            return EventError(index, f"{name}: required")
        if not isinstance(value, str):
            return EventError(index, f"{name}: must be a string")
        if len(value) > MAX_ID_LEN:
            return EventError(index, f"{name}: longer than {MAX_ID_LEN} characters")
    if raw["project_id"] not in (ctx.project_id, ctx.project_slug):
        return EventError(index, "project_id: does not match the API key's project")
    if raw["event.type"] not in EVENT_TYPES:
        return EventError(index, f"event.type: unknown type '{raw['event.type'][:64]}'")

    client_ts = raw.get("event.timestamp")
    if client_ts is None or client_ts == "":
        if not ctx.fill_missing_timestamp:
            return EventError(index, "event.timestamp: required")
        client_ms, ts_ms, filled = None, ctx.received_ms, True
    else:
        parsed = parse_rfc3339_ms(client_ts)
        if parsed is None:
            return EventError(index, "event.timestamp: invalid RFC3339 timestamp")
        client_ms, ts_ms, filled = parsed, parsed + ctx.skew_ms, False
        if ts_ms - ctx.received_ms > MAX_FUTURE_MS:
            return EventError(index, "event.timestamp: more than 23 h in the future")

    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return EventError(index, "metadata: must be an object")

    fields: dict[str, Scalar] = {}
    extra: dict[str, Scalar] = {}
    for key, value in raw.items():
        if key in _RESERVED or value is None:
            continue
        spec = FIELDS_BY_NAME.get(key)
        if spec is None:
            if len(extra) < MAX_EXTRA_KEYS and isinstance(key, str) and len(key) <= MAX_ID_LEN:
                extra[key] = _extra_value(value)
            continue
        try:
            fields[key] = _check_field(spec, value)
        except _FieldError as exc:
            return EventError(index, f"{key}: {exc}")

    return EventRecord(
        org_id=ctx.org_id,
        project_id=ctx.project_id,
        event_id=raw["event_id"],
        session_id=raw["session.id"],
        event_type=raw["event.type"],
        ts_ms=ts_ms,
        received_ms=ctx.received_ms,
        client_ts_ms=client_ms,
        ts_filled=filled,
        fields=fields,
        metadata=metadata or {},
        extra=extra,
    )


class _FieldError(ValueError):
    """Why a known field's value is unusable (becomes the per-event error)."""


def _check_field(spec: FieldSpec, value: Any) -> Scalar:
    """The checked (normalised) value of a known field, or :class:`_FieldError`."""
    kind = spec.kind
    if kind is Kind.STRING:
        if not isinstance(value, str):
            raise _FieldError("must be a string")
        if spec.max_len is not None and len(value) > spec.max_len:
            raise _FieldError(f"longer than {spec.max_len} characters")
        if spec.choices is not None and value not in spec.choices:
            raise _FieldError(f"must be one of {', '.join(sorted(spec.choices))}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError("must be a number")
    if kind is Kind.INT:
        if isinstance(value, float) and not value.is_integer():
            raise _FieldError("must be an integer")
        if not -(2**63) <= value < 2**63:
            raise _FieldError("out of range")
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        raise _FieldError("must be a finite number")
    if kind is Kind.DURATION and number < 0:
        raise _FieldError("must not be negative")
    if kind is Kind.UNIT_FLOAT and not 0.0 <= number <= 1.0:
        raise _FieldError("must be between 0 and 1")
    return number


def _extra_value(value: Any) -> Scalar:
    if isinstance(value, str):
        return value[:MAX_EXTRA_VALUE_LEN]
    if isinstance(value, bool | int | float):
        return value
    return orjson.dumps(value).decode()[:MAX_EXTRA_VALUE_LEN]
