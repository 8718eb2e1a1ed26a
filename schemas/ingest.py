"""Validation of one ``POST /v1/events`` event into an :class:`EventRecord` (pure, no I/O, clock passed in).

Errors follow the seed's ``<field>: <reason>`` form; the first error of an event is reported.  Required
fields are checked in the seed's order (``event_id``, ``project_id``/``product_id``, ``session.id``,
``event.type``, ``event.timestamp``).  Unknown keys are kept as extra attributes (newer SDKs must keep
working), bounded in count and size; known fields are type-checked against :mod:`schemas.fields`.

An event's size is its size on the wire; only in a body larger than 100 KB can one event exceed it, and
there the compact re-serialisation of the event is measured (``IngestContext.check_event_size``).

Hot path: one event costs a few microseconds.  Every known field goes through a precomputed plan
(kind code, length limit, choices) checked inline; only a value that fails the fast check goes through
:func:`_check_field`, which normalises it or names the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.fields import EVENT_TYPES, FIELDS, FIELDS_BY_NAME, FieldSpec, Kind
from schemas.records import EventRecord, Scalar

__all__ = [
    "MAX_EVENTS_PER_BATCH",
    "MAX_EVENT_BYTES",
    "MAX_EXTRA_KEYS",
    "MAX_EXTRA_VALUE_LEN",
    "MAX_FUTURE_MS",
    "MAX_ID_LEN",
    "BatchError",
    "EventError",
    "IngestContext",
    "parse_rfc3339_ms",
    "request_skew_ms",
    "validate_batch_shape",
    "validate_event",
    "validate_events",
]

MAX_EVENTS_PER_BATCH = 1000
MAX_EVENT_BYTES = 100 * 1024
MAX_FUTURE_MS = 23 * 3600 * 1000
MAX_EXTRA_KEYS = 64
MAX_EXTRA_VALUE_LEN = 1024
MAX_ID_LEN = 255
_RESERVED = frozenset(
    {"event_id", "project_id", "product_id", "session.id", "event.type", "event.timestamp", "metadata"}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_GO_ZERO_TIME_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z: Go SDKs send it for "unset"


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
    # False when the whole body is at most MAX_EVENT_BYTES: then no event can be larger on the wire
    check_event_size: bool = True


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

    RFC3339 and RFC3339Nano both parse (digits past the microsecond are dropped).  A timestamp without
    an offset is taken as UTC (browsers' ``toISOString`` always has ``Z``).
    """
    if not isinstance(value, str) or not 16 <= len(value) <= 40 or value[10] not in "Tt ":
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return (dt - _EPOCH) // _MS
    except OverflowError:  # offsets pushing year 1 or 9999 out of range
        return None


def request_skew_ms(sent_at: Any, received_ms: int) -> int | None:
    """``received_at - sent_at`` for the body's optional ``sent_at``; None when it is absent or unusable.

    An unusable ``sent_at`` does not reject the batch (the contract's 400s are about the body's shape):
    events are then stored with their own timestamps, uncorrected.
    """
    sent_ms = parse_rfc3339_ms(sent_at)
    if sent_ms is None or sent_ms == _GO_ZERO_TIME_MS:
        return None
    return received_ms - sent_ms


# Per known field: (kind code, length limit, choices).  Codes: 0 string, 1 int, 2 float, 3 duration,
# 4 unit float.  The plan is the fast path; _check_field stays the one definition of the rules.
_CODES = {Kind.STRING: 0, Kind.INT: 1, Kind.FLOAT: 2, Kind.DURATION: 3, Kind.UNIT_FLOAT: 4}
_NO_LIMIT = 1 << 62
_PLAN: dict[str, tuple[int, int, frozenset[str] | None]] = {
    **{name: (-1, 0, None) for name in _RESERVED},  # handled before the loop
    **{f.name: (_CODES[f.kind], f.max_len or _NO_LIMIT, f.choices) for f in FIELDS},
}
_INT_MIN, _INT_MAX = -(2**63), 2**63
_EXACT = 2**53  # integers a double holds exactly


def validate_event(index: int, raw: Any, ctx: IngestContext) -> EventRecord | EventError:
    """The record of one event, or the first reason it is unusable."""
    if type(raw) is not dict:
        return EventError(index, "event: must be an object")
    if ctx.check_event_size and len(orjson.dumps(raw)) > MAX_EVENT_BYTES:
        return EventError(index, "event: larger than 100 KB")
    project = raw.get("project_id")
    if project is None:
        project = raw.get("product_id")
    event_id, session_id, event_type = raw.get("event_id"), raw.get("session.id"), raw.get("event.type")
    if not (
        type(event_id) is str
        and type(project) is str
        and type(session_id) is str
        and type(event_type) is str
        and 0 < len(event_id) <= MAX_ID_LEN
        and 0 < len(project) <= MAX_ID_LEN
        and 0 < len(session_id) <= MAX_ID_LEN
        and 0 < len(event_type) <= MAX_ID_LEN
    ):
        return _required_error(index, (event_id, project, session_id, event_type))
    if project != ctx.project_id and project != ctx.project_slug:
        return EventError(index, "project_id: does not match the API key's project")
    if event_type not in EVENT_TYPES:
        return EventError(index, f"event.type: unknown type '{event_type[:64]}'")

    client_ts = raw.get("event.timestamp")
    client_ms = None if client_ts is None or client_ts == "" else parse_rfc3339_ms(client_ts)
    if client_ms is None or client_ms == _GO_ZERO_TIME_MS:
        if client_ms is None and not (client_ts is None or client_ts == ""):
            return EventError(index, "event.timestamp: invalid RFC3339 timestamp")
        if not ctx.fill_missing_timestamp:
            return EventError(index, "event.timestamp: required")
        client_ms, ts_ms, filled = None, ctx.received_ms, True
    else:
        ts_ms, filled = client_ms + ctx.skew_ms, False
        if ts_ms - ctx.received_ms > MAX_FUTURE_MS:
            return EventError(index, "event.timestamp: more than 23 h in the future")
        if ts_ms < 0:
            return EventError(index, "event.timestamp: before 1970-01-01")

    metadata = raw.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        return EventError(index, "metadata: must be an object")

    fields: dict[str, Scalar] = {}
    extra: dict[str, Scalar] = {}
    plans = _PLAN
    for key, value in raw.items():
        plan = plans.get(key)
        if plan is None:
            if value is not None and len(extra) < MAX_EXTRA_KEYS and len(key) <= MAX_ID_LEN:
                extra[key] = _extra_value(value)
            continue
        code, limit, choices = plan
        tv = type(value)
        if code == 0:
            if tv is str and len(value) <= limit and (choices is None or value in choices):
                fields[key] = value
                continue
        elif code < 0 or value is None:
            continue
        elif code == 1:
            if tv is int and _INT_MIN <= value < _INT_MAX:
                fields[key] = value
                continue
        else:
            if tv is int and -_EXACT <= value <= _EXACT:  # SDKs send whole numbers as ints
                value = float(value)
                tv = float
            if tv is float and value - value == 0.0 and (code == 2 or (value >= 0.0 and (code == 3 or value <= 1.0))):
                fields[key] = value
                continue
        try:
            fields[key] = _check_field(FIELDS_BY_NAME[key], value)
        except _FieldError as exc:
            return EventError(index, f"{key}: {exc}")

    return EventRecord(
        org_id=ctx.org_id,
        project_id=ctx.project_id,
        event_id=event_id,
        session_id=session_id,
        event_type=event_type,
        ts_ms=ts_ms,
        received_ms=ctx.received_ms,
        client_ts_ms=client_ms,
        ts_filled=filled,
        fields=fields,
        metadata=metadata or {},
        extra=extra,
    )


def validate_events(events: Sequence[Any], ctx: IngestContext) -> tuple[list[EventRecord], list[EventError]]:
    """Every event of a batch on its own: the good ones as records, the others as errors by index."""
    records: list[EventRecord] = []
    errors: list[EventError] = []
    for i, raw in enumerate(events):
        result = validate_event(i, raw, ctx)
        if type(result) is EventRecord:
            records.append(result)
        else:
            errors.append(result)  # type: ignore[arg-type]
    return records, errors


_REQUIRED_NAMES = ("event_id", "project_id", "session.id", "event.type")


def _required_error(index: int, values: tuple[Any, ...]) -> EventError:
    """The first problem among the required ids, in the seed's order."""
    for name, value in zip(_REQUIRED_NAMES, values, strict=True):
        if value is None or value == "":
            return EventError(index, f"{name}: required")
        if type(value) is not str:
            return EventError(index, f"{name}: must be a string")
        if len(value) > MAX_ID_LEN:
            return EventError(index, f"{name}: longer than {MAX_ID_LEN} characters")
    raise AssertionError("called for valid ids")


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
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a double
        raise _FieldError("must be a finite number") from None
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
