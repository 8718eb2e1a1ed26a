"""The ingestion contract as OpenAPI: schemas generated from :mod:`schemas.fields`, responses with examples.

``app.openapi()`` gets these components added; the route refers to them, so ``/openapi.json`` and
``/docs`` document every field, limit and answer of ``../shared/design/event-contract.md``.
"""

from __future__ import annotations

from typing import Any

from schemas.fields import EVENT_TYPES, FIELDS, Kind
from schemas.ingest import MAX_EVENT_BYTES, MAX_EVENTS_PER_BATCH, MAX_ID_LEN

__all__ = ["COMPONENTS", "REQUEST_BODY", "RESPONSES"]


def _field_schema(kind: Kind, max_len: int | None, choices: frozenset[str] | None) -> dict[str, Any]:
    if kind is Kind.STRING:
        out: dict[str, Any] = {"type": "string"}
        if max_len is not None:
            out["maxLength"] = max_len
        if choices is not None:
            out["enum"] = sorted(choices)
        return out
    if kind is Kind.INT:
        return {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    if kind is Kind.DURATION:
        return {"type": "number", "minimum": 0, "description": "milliseconds; any finite non-negative number"}
    if kind is Kind.UNIT_FLOAT:
        return {"type": "number", "minimum": 0, "maximum": 1}
    return {"type": "number"}


_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN}

_EVENT_EXAMPLE: dict[str, Any] = {
    "event_id": "0192f0c2-7d1e-7b1a-9c55-2f4c1a9e0001",
    "project_id": "my-project",
    "session.id": "s-42",
    "event.type": "api.response",
    "event.timestamp": "2026-11-25T10:00:00.000Z",
    "user.id": "u-7",
    "page.path": "/checkout/payment",
    "api.method": "POST",
    "api.path": "/api/checkout/payment",
    "api.status_code": 502,
    "api.duration_ms": 412.5,
    "metadata": {"plan": "pro"},
    "sdk.new_field": "kept as an extra attribute",
}

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One event; keys are flat dotted strings. Required: event_id, project_id (or its alias product_id: the "
        "project's id or slug), session.id, event.type; event.timestamp is filled with the receive time when "
        "missing (flagged on the stored row). Unknown keys are kept as extra attributes (scalars, at most 64 "
        f"keys of 1 KB), never rejected. An event larger than {MAX_EVENT_BYTES // 1024} KB is rejected."
    ),
    "required": ["event_id", "session.id", "event.type"],
    "properties": {
        "event_id": {**_ID, "description": "client id, opaque; the same id within the dedup window is a duplicate"},
        "project_id": {**_ID, "description": "the API key's project, by id or slug"},
        "product_id": {**_ID, "description": "alias of project_id (newer SDKs)"},
        "session.id": _ID,
        "event.type": {"type": "string", "enum": sorted(EVENT_TYPES)},
        "event.timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 (nano); corrected by received_at - sent_at; > 23 h in the future is rejected",
        },
        **{f.name: _field_schema(f.kind, f.max_len, f.choices) for f in FIELDS},
        "metadata": {"type": "object", "additionalProperties": True, "description": "any JSON object"},
    },
    "additionalProperties": True,
    "example": _EVENT_EXAMPLE,
}

COMPONENTS: dict[str, Any] = {
    "Event": EVENT_SCHEMA,
    "EventBatch": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "maxItems": MAX_EVENTS_PER_BATCH,
                "items": {"$ref": "#/components/schemas/Event"},
            },
            "sent_at": {
                "type": "string",
                "format": "date-time",
                "description": "client clock when sending; enables clock-skew correction (ignored when unusable)",
            },
        },
    },
    "EventError": {
        "type": "object",
        "required": ["index", "error"],
        "properties": {
            "index": {"type": "integer", "minimum": 0, "description": "position in events"},
            "error": {"type": "string", "description": "'<field>: <reason>', the event's first error"},
        },
    },
    "IngestResult": {
        "type": "object",
        "required": ["accepted", "rejected", "duplicates", "errors"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0, "description": "events Kafka acknowledged (acks=all)"},
            "rejected": {"type": "integer", "minimum": 0},
            "duplicates": {
                "type": "integer",
                "minimum": 0,
                "description": "seen before within the dedup window: not republished",
            },
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/EventError"}},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "accepted": {"type": "integer", "enum": [0], "description": "present on 429 and 503: nothing accepted"},
        },
    },
}

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "JSON body, optionally Content-Encoding gzip, deflate or zstd; at most 10 MB decompressed "
        f"and {MAX_EVENTS_PER_BATCH} events. Auth: X-PG-API-Key or Authorization: Bearer."
    ),
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/EventBatch"},
            "examples": {
                "one event": {"value": {"events": [_EVENT_EXAMPLE], "sent_at": "2026-11-25T10:00:01.000Z"}},
                "empty batch": {"value": {"events": []}},
            },
        }
    },
}


def _error(description: str, example: str, retry: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"error": example}
    if retry:
        body["accepted"] = 0
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": body}},
    }
    if retry:
        out["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "the request was well formed; zero or more events accepted (each event answered on its own)",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/IngestResult"},
                "examples": {
                    "partly accepted": {
                        "value": {
                            "accepted": 1,
                            "rejected": 2,
                            "duplicates": 1,
                            "errors": [
                                {"index": 1, "error": "session.id: required"},
                                {"index": 3, "error": "event.type: unknown type 'foo'"},
                            ],
                        }
                    },
                    "empty batch": {"value": {"accepted": 0, "rejected": 0, "duplicates": 0, "errors": []}},
                },
            }
        },
    },
    400: _error(
        "body is not JSON, not an object, events not a list, more than 1000 events, corrupt compressed data, "
        "or not received within the body timeout; nothing accepted",
        "body: invalid JSON",
    ),
    401: _error(
        "missing, unknown or revoked API key (or a browser Origin the project does not allow)",
        "unknown or revoked API key",
    ),
    405: {"description": "method other than POST or OPTIONS"},
    413: _error("body over 10 MB after decompression", "body larger than 10485760 bytes"),
    415: _error("not JSON, or unsupported Content-Encoding", "content type 'application/xml' is not supported"),
    429: _error("project over its rate limit (token bucket, per-project setting)", "project over its rate limit", True),
    503: _error("Kafka or the key store unavailable, or the gateway overloaded; nothing accepted", "retry later", True),
}
