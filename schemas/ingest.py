"""Validation of one ``POST /v1/events`` event into an :class:`EventRecord` (pure, no I/O, clock passed in).

Errors follow the seed's ``<field>: <reason>`` form; the first error of an event is reported.  Required
fields are checked in the seed's order (``event_id``, ``project_id``/``product_id``, ``session.id``,
``event.type``, ``event.timestamp``).  Unknown keys are kept as extra attributes (newer SDKs must keep
working), bounded in count and size; known fields are type-checked against :mod:`schemas.fields`.

An event's size is its size on the wire; only in a body larger than 100 KB can one event exceed it, and
there the compact re-serialisation of the event is measured (``IngestContext.check_event_size``).

Hot path (~5 µs per event of 25 keys): the events of one SDK and type share a key layout, and per
layout the checks of every known field are precomputed (:class:`_Shape`: exact types and string lengths
in a few C-level passes).  An event that passes them all is stored as is; any other goes key by key
through a precomputed plan (kind code, length limit, choices), and a value that fails that too through
:func:`_check_field`, which normalises it or names the reason (the first error, in key order).  Both
paths give the same record (tests/unit/test_gateway_fast_paths.py).  The gateway hands over the parsed
events (``owned=True``): each becomes its record's ``fields`` once the reserved and unknown keys are
popped, with no copy.

The gateway itself calls :func:`encode_events` (a batch straight to Kafka record bytes, no
:class:`EventRecord` in between): per layout of the *whole* event (reserved keys included) the exact
types and positions of every value are precomputed, so a valid event is checked on
``tuple(raw.values())`` without a key lookup, then encoded from its own dict; any event that is not
plainly valid goes through :func:`validate_event`, so errors and bytes are those of the plain path
(~20% less CPU than validating, then encoding, per event).  Whole numbers in float fields (what
JavaScript's ``JSON.stringify`` sends for ``120.0``) stay on that path: per layout, each such variant of
the types is cached with the positions to convert, and the event is checked and stored as floats.

Measured and not kept: msgspec (0.22) decodes these bodies no faster than orjson (typed ``Struct``
decoding neither keeps the event's key order, which the record's ``fields`` follow, nor its unknown
keys) and encodes the records ~50% slower; checking values in groups with ``map``/``all`` is slower
than the loop for the handful of numbers and enumerations an event has.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.fields import EVENT_TYPES, FIELDS, FIELDS_BY_NAME, FieldSpec, Kind
from schemas.records import RECORD_VERSION, EventRecord, Scalar

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
    "encode_events",
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
_TYPES = {0: str, 1: int, 2: float, 3: float, 4: float}


@dataclass(frozen=True, slots=True)
class _Shape:
    """The checks for one key layout of an event, precomputed.

    An SDK sends the same keys in the same order for every event of a type, so a batch holds a handful
    of layouts.  For a layout, every known field is checked in a few C-level passes (exact types, string
    lengths) plus a loop over the few numbers and enumerations; an event that fails any of them (or
    whose values need normalising, such as an integer duration) goes through :func:`_checked_fields`,
    which finds the first error exactly as before.  Both paths accept and store the same thing.
    """

    values: Callable[[dict[str, Any]], tuple[Any, ...]]
    types: tuple[type, ...]  # the exact type each must have
    strings: Callable[[dict[str, Any]], tuple[Any, ...]]  # the strings limited to _WIDE characters or more
    limits: tuple[int, ...]  # their limits, when one of them is longer than _WIDE
    # (name, code, limit, choices) of numbers, enumerations and strings limited to fewer than _WIDE
    checks: tuple[tuple[str, int, int, frozenset[str] | None], ...]
    unknown: tuple[str, ...]  # kept as extra attributes (bounded in count and key length)


_WIDE = 255  # most limits are 255 or more; one max() over their lengths settles the usual case
_MAX_SHAPES = 4096  # past that (a client inventing keys), events take the key-by-key path
_SHAPES: dict[tuple[str, ...], _Shape] = {}


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda raw: (raw[name],)
    if not names:
        return lambda raw: ()
    return operator.itemgetter(*names)


def _new_shape(keys: tuple[str, ...]) -> _Shape | None:
    if len(_SHAPES) >= _MAX_SHAPES:
        return None
    known = [k for k in keys if k in FIELDS_BY_NAME]
    plans = dict(zip(known, (_PLAN[k] for k in known), strict=True))
    wide = [k for k, (code, limit, _) in plans.items() if code == 0 and _WIDE <= limit < _NO_LIMIT]
    shape = _Shape(
        values=_getter(known),
        types=tuple(_TYPES[code] for code, _, _ in plans.values()),
        strings=_getter(wide),
        limits=tuple(plans[k][1] for k in wide),
        checks=tuple(
            (k, code, limit, choices)
            for k, (code, limit, choices) in plans.items()
            if code > 0 or limit < _WIDE or choices is not None
        ),
        unknown=tuple(k for k in keys if k not in _PLAN),
    )
    _SHAPES[keys] = shape
    return shape


def _shaped_valid(raw: dict[str, Any], shape: _Shape) -> bool:
    """Whether every known field is already valid and normal (else: the key-by-key path)."""
    if tuple(map(type, shape.values(raw))) != shape.types:
        return False
    if (
        shape.limits
        and max(map(len, strings := shape.strings(raw))) > _WIDE
        and not all(map(operator.le, map(len, strings), shape.limits))
    ):
        return False
    for name, code, limit, choices in shape.checks:
        v = raw[name]
        if code == 0:
            if len(v) > limit or (choices is not None and v not in choices):
                return False
        elif code == 1:
            if not _INT_MIN <= v < _INT_MAX:
                return False
        elif not (v - v == 0.0 and (code == 2 or (v >= 0.0 and (code == 3 or v <= 1.0)))):
            return False
    return True


def _record_factory() -> Callable[..., EventRecord]:
    """EventRecord's constructor, or (same result) its slots filled directly: the frozen dataclass's
    ``__init__`` goes through ``object.__setattr__`` per field, a tenth of the validation's time."""
    names = [f.name for f in dataclasses.fields(EventRecord)]
    slots = [getattr(EventRecord, n, None) for n in names]
    if any(type(s) is not types.MemberDescriptorType for s in slots) or hasattr(EventRecord, "__post_init__"):
        return EventRecord
    (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11) = [s.__set__ for s in slots]  # type: ignore[union-attr]
    new = object.__new__

    def make(
        org_id: str, project_id: str, event_id: str, session_id: str, event_type: str, ts_ms: int,
        received_ms: int, client_ts_ms: int | None, ts_filled: bool, fields: dict[str, Scalar],
        metadata: dict[str, Any], extra: dict[str, Scalar],
    ) -> EventRecord:  # fmt: skip
        r = new(EventRecord)
        s0(r, org_id), s1(r, project_id), s2(r, event_id), s3(r, session_id), s4(r, event_type), s5(r, ts_ms)
        s6(r, received_ms), s7(r, client_ts_ms), s8(r, ts_filled), s9(r, fields), s10(r, metadata), s11(r, extra)
        return r

    return make


_new_record = _record_factory()


def validate_event(index: int, raw: Any, ctx: IngestContext, *, owned: bool = False) -> EventRecord | EventError:
    """The record of one event, or the first reason it is unusable.

    ``owned``: the caller hands ``raw`` over (the gateway's freshly parsed body); it is then taken apart
    and becomes the record's ``fields``, which spares a dict per event.  Otherwise ``raw`` is left as is.
    """
    if type(raw) is not dict:
        return EventError(index, "event: must be an object")
    if ctx.check_event_size and len(orjson.dumps(raw)) > MAX_EVENT_BYTES:
        return EventError(index, "event: larger than 100 KB")
    if not owned:
        raw = raw.copy()
    project = raw.pop("project_id", None)
    alias = raw.pop("product_id", None)
    if project is None:
        project = alias
    event_id, session_id, event_type = (
        raw.pop("event_id", None),
        raw.pop("session.id", None),
        raw.pop("event.type", None),
    )
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

    client_ts = raw.pop("event.timestamp", None)
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

    metadata = raw.pop("metadata", None)
    if metadata is not None and type(metadata) is not dict:
        return EventError(index, "metadata: must be an object")

    # what is left of raw: optional known fields and unknown keys
    keys = tuple(raw)
    shape = _SHAPES.get(keys) or _new_shape(keys)
    if shape is not None and _shaped_valid(raw, shape):
        extra: dict[str, Scalar] = {}
        for key in shape.unknown:
            value = raw.pop(key)
            if value is not None and len(extra) < MAX_EXTRA_KEYS and len(key) <= MAX_ID_LEN:
                extra[key] = _extra_value(value)
        fields: dict[str, Scalar] = raw
    else:
        checked = _checked_fields(index, raw)
        if type(checked) is EventError:
            return checked
        fields, extra = checked  # type: ignore[misc]

    return _new_record(
        ctx.org_id, ctx.project_id, event_id, session_id, event_type, ts_ms, ctx.received_ms, client_ms, filled,
        fields, metadata or {}, extra,
    )  # fmt: skip


def validate_events(
    events: Sequence[Any], ctx: IngestContext, *, owned: bool = False
) -> tuple[list[EventRecord], list[EventError]]:
    """Every event of a batch on its own: the good ones as records, the others as errors by index.

    ``owned`` as in :func:`validate_event`, for every event.
    """
    records: list[EventRecord] = []
    errors: list[EventError] = []
    for i, raw in enumerate(events):
        result = validate_event(i, raw, ctx, owned=owned)
        if type(result) is EventRecord:
            records.append(result)
        else:
            errors.append(result)  # type: ignore[arg-type]
    return records, errors


def _checked_fields(index: int, raw: dict[str, Any]) -> tuple[dict[str, Scalar], dict[str, Scalar]] | EventError:
    """Known fields (checked, normalised) and extra attributes, or the first field's error, key by key."""
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
    return fields, extra


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


# --- Whole batches straight to Kafka record bytes (the gateway's hot path) ---------------------------------


@dataclass(frozen=True, slots=True)
class _Layout:
    """What :func:`encode_events` checks for one key layout of a whole event, reserved keys included.

    Positions index the event's values in key order (``tuple(raw.values())``), so no key is looked up
    until the event is known to be valid.  ``types`` is the exact type of every value: the contract's
    type for ids and known fields, the first event's type for unknown keys (whose handling then follows).
    An integer where a float field is expected (``"duration_ms": 120``, what JavaScript sends for whole
    numbers) is one more variant of the types, with the positions to convert cached in ``variants``.
    """

    keys: tuple[str, ...]
    types: tuple[type, ...]
    ids: Callable[[tuple[Any, ...]], tuple[Any, ...]]  # event_id, project, session.id, event.type
    ts: int  # position of event.timestamp, -1 when absent
    metadata: int  # position of metadata, -1 when absent
    strings: Callable[[tuple[Any, ...]], tuple[Any, ...]]  # ids and strings limited to _WIDE or more
    limits: tuple[int, ...]
    checks: tuple[tuple[int, int, int, frozenset[str] | None], ...]  # (position, code, limit, choices)
    reserved: tuple[str, ...]  # deleted from the event, which then is the record's fields
    unknown: tuple[tuple[str, int], ...]  # (key, 0 kept as is, 1 kept through _extra_value, 2 dropped)
    floats: frozenset[int]  # positions of known fields of a float kind
    variants: dict[tuple[type, ...], tuple[int, ...] | None]  # other types -> positions of ints to convert


_MAX_VARIANTS = 64  # per layout; past that, other types take validate_event uncached


def _int_positions(layout: _Layout, kinds: tuple[type, ...]) -> tuple[int, ...] | None:
    """Where ``kinds`` has an ``int`` for a float field (bool is not one), when that is its only difference
    from the layout's types; else None (such events take :func:`validate_event`)."""
    at = []
    for i, (want, got) in enumerate(zip(layout.types, kinds, strict=True)):
        if got is not want:
            if got is not int or i not in layout.floats:
                return None
            at.append(i)
    return tuple(at)


def _as_floats(vals: tuple[Any, ...], at: tuple[int, ...]) -> tuple[Any, ...] | None:
    """``vals`` with the integers at ``at`` as floats (what :func:`_checked_fields` stores), None when one
    is too large for a double."""
    out = list(vals)
    try:
        for i in at:
            out[i] = float(out[i])
    except OverflowError:
        return None
    return tuple(out)


_LAYOUTS: dict[tuple[str, ...], _Layout | None] = {}
_SCALARS = (str, int, float, bool)


def _make_layout(keys: tuple[str, ...], first: dict[str, Any]) -> _Layout | None:
    """The layout of ``keys``, cached; None (also cached) when such events always take
    :func:`validate_event`: a required id missing, more unknown keys than are kept."""
    if len(_LAYOUTS) >= _MAX_SHAPES:
        return None
    layout: _Layout | None = None
    pos = {k: i for i, k in enumerate(keys)}
    project_key = "project_id" if "project_id" in pos else "product_id"
    unknown = [k for k in keys if k not in _PLAN]
    ids = ["event_id", project_key, "session.id", "event.type"]
    if all(k in pos for k in ids) and len(unknown) <= MAX_EXTRA_KEYS:
        types: list[type] = []
        for k in keys:
            plan = _PLAN.get(k)
            if k in ids or k == "event.timestamp":
                types.append(str)
            elif k == "metadata":
                types.append(dict)
            elif plan is not None and plan[0] >= 0:
                types.append(_TYPES[plan[0]])
            else:  # unknown keys, and product_id next to project_id (ignored then)
                types.append(type(first[k]))
        known = [(k, _PLAN[k]) for k in keys if k in FIELDS_BY_NAME]
        wide = [pos[k] for k, (code, limit, _) in known if code == 0 and _WIDE <= limit < _NO_LIMIT]
        wide_extra = [pos[k] for k in unknown if len(k) <= MAX_ID_LEN and type(first[k]) is str]
        layout = _Layout(
            keys=keys,
            types=tuple(types),
            ids=operator.itemgetter(*(pos[k] for k in ids)),
            ts=pos.get("event.timestamp", -1),
            metadata=pos.get("metadata", -1),
            strings=operator.itemgetter(*(pos[k] for k in ids), *wide, *wide_extra),
            limits=(
                *(MAX_ID_LEN,) * len(ids),
                *(_PLAN[keys[i]][1] for i in wide),
                *(MAX_EXTRA_VALUE_LEN,) * len(wide_extra),
            ),
            checks=tuple(
                (pos[k], code, limit, choices)
                for k, (code, limit, choices) in known
                if code > 0 or limit < _WIDE or choices is not None
            ),
            reserved=tuple(k for k in keys if k in _RESERVED),
            unknown=tuple(
                (k, 2 if len(k) > MAX_ID_LEN or first[k] is None else 0 if type(first[k]) in _SCALARS else 1)
                for k in unknown
            ),
            floats=frozenset(pos[k] for k, (code, _, _) in known if code >= 2),
            variants={},
        )
    _LAYOUTS[keys] = layout
    return layout


_MISSING: Any = object()
_UTC = UTC


def encode_events(
    events: Sequence[Any], ctx: IngestContext
) -> tuple[list[str], list[tuple[bytes, bytes]], list[int], list[EventError]]:
    """Every event of a batch straight to its Kafka record: ``(ids, records, extras, errors)`` where
    ``records`` are ``(key, value)`` as :attr:`EventRecord.key` and :meth:`EventRecord.encode` give them,
    ``extras`` the number of extra attributes per record, ``errors`` as :func:`validate_events` gives them.

    The events are taken apart (as ``owned=True``).  An event whose layout is known and whose values are
    all valid and normal is checked in a few C-level passes and encoded from its own dict; any other goes
    through :func:`validate_event`, so both give the same bytes and the same first error.
    """
    ids: list[str] = []
    records: list[tuple[bytes, bytes]] = []
    extras: list[int] = []
    errors: list[EventError] = []
    org_id, project_id, slug, received_ms, skew = (
        ctx.org_id, ctx.project_id, ctx.project_slug, ctx.received_ms, ctx.skew_ms
    )  # fmt: skip
    sized = ctx.check_event_size  # in a body over 100 KB, an event is measured before anything else
    fill = ctx.fill_missing_timestamp
    latest = received_ms + MAX_FUTURE_MS
    key_prefix = f"{project_id}:"
    layouts, types_, dumps, fromisoformat, le, event_types = (
        _LAYOUTS, type, orjson.dumps, datetime.fromisoformat, operator.le, EVENT_TYPES
    )  # fmt: skip
    add_id, add_record, add_extras = ids.append, records.append, extras.append
    for i, raw in enumerate(events):
        if types_(raw) is dict and not (sized and len(dumps(raw)) > MAX_EVENT_BYTES):
            keys = tuple(raw)
            layout = layouts.get(keys, _MISSING)
            if layout is _MISSING:
                layout = _make_layout(keys, raw)
            vals = tuple(raw.values())
            floated: tuple[int, ...] | None = None
            if layout is not None and (kinds := tuple(map(types_, vals))) != layout.types:
                floated = layout.variants.get(kinds, _MISSING)
                if floated is _MISSING:
                    floated = _int_positions(layout, kinds)
                    if len(layout.variants) < _MAX_VARIANTS:
                        layout.variants[kinds] = floated
                if floated is None or (as_floats := _as_floats(vals, floated)) is None:
                    layout = None  # not plainly valid: validate_event below
                else:
                    vals = as_floats
            if layout is not None:
                event_id, project, session_id, event_type = layout.ids(vals)
                strings = layout.strings(vals)
                # non-empty ids (an empty string is falsy); every limited string within its limit
                ok = bool(
                    event_id
                    and session_id
                    and project in (project_id, slug)
                    and event_type in event_types
                    and (max(map(len, strings)) <= _WIDE or all(map(le, map(len, strings), layout.limits)))
                )
                client_ms: int | None = None
                if ok and layout.ts >= 0:
                    ts = vals[layout.ts]
                    ok = 16 <= len(ts) <= 40 and ts[10] in "Tt "
                    if ok:
                        try:
                            dt = fromisoformat(ts)
                            if dt.tzinfo is None:
                                dt = dt.replace(tzinfo=_UTC)
                            delta = dt - _EPOCH  # in whole ms: as (dt - _EPOCH) // _MS, without its big-int arithmetic
                            client_ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
                        except (ValueError, OverflowError):
                            ok = False
                        else:
                            ts_ms = client_ms + skew
                            ok = client_ms != _GO_ZERO_TIME_MS and 0 <= ts_ms <= latest
                    filled = False
                elif ok:
                    ok, ts_ms, filled = fill, received_ms, True
                if ok:
                    for at, code, limit, choices in layout.checks:
                        v = vals[at]
                        if code == 0:
                            if len(v) > limit or (choices is not None and v not in choices):
                                ok = False
                                break
                        elif code == 1:
                            if not _INT_MIN <= v < _INT_MAX:
                                ok = False
                                break
                        elif not (v - v == 0.0 and (code == 2 or (v >= 0.0 and (code == 3 or v <= 1.0)))):
                            ok = False
                            break
                if ok:
                    metadata = vals[layout.metadata] if layout.metadata >= 0 else None
                    for key in layout.reserved:
                        del raw[key]
                    if floated:
                        for at in floated:
                            raw[layout.keys[at]] = vals[at]  # in place: the key keeps its position
                    extra: dict[str, Scalar] = {}
                    if layout.unknown:
                        for key, how in layout.unknown:
                            value = raw.pop(key)
                            if how == 0:
                                extra[key] = value
                            elif how == 1:
                                extra[key] = _extra_value(value)
                    add_id(event_id)
                    add_record(
                        (
                            (key_prefix + session_id).encode(),
                            dumps(
                                {
                                    "v": RECORD_VERSION,
                                    "org_id": org_id,
                                    "project_id": project_id,
                                    "event_id": event_id,
                                    "session_id": session_id,
                                    "event_type": event_type,
                                    "ts_ms": ts_ms,
                                    "received_ms": received_ms,
                                    "client_ts_ms": client_ms,
                                    "ts_filled": filled,
                                    "fields": raw,
                                    "metadata": metadata or {},
                                    "extra": extra,
                                }
                            ),
                        )
                    )
                    add_extras(len(extra))
                    continue
        result = validate_event(i, raw, ctx, owned=True)
        if type(result) is EventRecord:
            ids.append(result.event_id)
            records.append((result.key, result.encode()))
            extras.append(len(result.extra))
        else:
            errors.append(result)  # type: ignore[arg-type]
    return ids, records, extras, errors
