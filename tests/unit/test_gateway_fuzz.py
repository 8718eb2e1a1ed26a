"""Thousands of malformed requests: no 5xx, no crash, every answer one of the documented ones (hypothesis).

Bodies are random bytes, random JSON, and batches of events mixing valid events with known fields of the
wrong type, random keys and random values, sent with random content types and encodings.  The validator
itself gets random events too: it never raises, and every record it makes survives the Kafka encoding.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.fields import EVENT_TYPES, FIELDS
from schemas.ingest import EventError, IngestContext, validate_event
from schemas.records import EventRecord
from tests.unit.test_gateway_support import PROJECT_ID, SLUG, Gateway, event, gateway

DOCUMENTED = {202, 400, 401, 413, 415, 429, 503}
ERROR_FORM = re.compile(r"^[^:\s]+: .+$", re.S)

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), _text
)
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4), max_leaves=12
)
_known_keys = st.sampled_from(
    [f.name for f in FIELDS] + ["event_id", "project_id", "product_id", "session.id", "event.type", "event.timestamp"]
)
_values = st.one_of(
    _json,
    st.sampled_from(sorted(EVENT_TYPES)),
    st.sampled_from([SLUG, PROJECT_ID, "2026-11-25T10:00:00Z", "2026-13-45T99:00:00Z", "", "x" * 300]),
)


@st.composite
def events(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(_json)  # not even an object, most of the time
    base = event(draw(st.integers(0, 50))) if kind >= 2 else {}
    base.update(draw(st.dictionaries(st.one_of(_known_keys, _text), _values, max_size=8)))
    if kind == 3:
        base.update(draw(st.dictionaries(_known_keys, _json, max_size=3)))
    return base


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str], int | None]:
    """(wire body, headers, number of events when it is a well-formed batch)"""
    shape = draw(st.integers(0, 4))
    n: int | None = None
    if shape == 0:
        raw = draw(st.binary(max_size=200))
    elif shape == 1:
        raw = json.dumps(draw(_json)).encode()  # big integers too, as any client may send
    else:
        batch = draw(st.lists(events(), max_size=12))
        body: dict[str, Any] = {"events": batch}
        if draw(st.booleans()):
            body["sent_at"] = draw(_values)
        raw, n = json.dumps(body).encode(), len(batch)
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "text/html", "", "a/b; x=y"]))}
    encoding = draw(st.sampled_from(["", "gzip", "zstd", "br", "gzip-but-not"]))
    if encoding:
        headers["Content-Encoding"] = encoding
        if encoding == "gzip" and draw(st.booleans()):
            raw = gzip.compress(raw)
        elif encoding == "zstd" and draw(st.booleans()):
            raw = zstandard.ZstdCompressor().compress(raw)
    if draw(st.integers(0, 20)) == 0:
        headers["X-PG-API-Key"] = draw(_text.filter(lambda t: t.isascii() and t.isprintable()))
    return raw, headers, n


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[tuple[asyncio.AbstractEventLoop, Gateway]]:
    loop = asyncio.new_event_loop()
    cm = gateway({"max_body_bytes": 64 * 1024}, rate_limit_per_s=1_000_000)
    gw = loop.run_until_complete(cm.__aenter__())
    try:
        yield loop, gw
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bodies())
def test_malformed_requests_get_documented_answers(
    fuzz_gateway: tuple[asyncio.AbstractEventLoop, Gateway], case: tuple[bytes, dict[str, str], int | None]
) -> None:
    loop, gw = fuzz_gateway
    raw, headers, n = case
    published_before = len(gw.kafka.records)
    resp = loop.run_until_complete(gw.post(content=raw, headers=headers))
    assert resp.status_code in DOCUMENTED, resp.text
    assert resp.status_code < 500
    body = resp.json()
    if resp.status_code != 202:
        assert set(body) <= {"error", "accepted"} and isinstance(body["error"], str)
        assert len(gw.kafka.records) == published_before
        return
    assert set(body) == {"accepted", "rejected", "duplicates", "errors"}
    assert n is not None and body["accepted"] + body["rejected"] + body["duplicates"] == n
    assert len(gw.kafka.records) - published_before == body["accepted"]
    indexes = [e["index"] for e in body["errors"]]
    assert indexes == sorted(set(indexes)) and all(0 <= i < n for i in indexes) and len(indexes) == body["rejected"]
    assert all(ERROR_FORM.match(e["error"]) for e in body["errors"])


_CTX = IngestContext("org", PROJECT_ID, SLUG, 1_795_000_000_000, skew_ms=1234)


@settings(max_examples=2000, deadline=None)
@given(raw=events())
def test_validator_never_raises_and_records_survive_encoding(raw: Any) -> None:
    raw = orjson.loads(json.dumps(raw))  # as it arrives: decoded from the wire
    result = validate_event(7, raw, _CTX)
    if isinstance(result, EventError):
        assert result.index == 7 and ERROR_FORM.match(result.error)
    else:
        assert EventRecord.decode(result.encode()) == result
        assert result.project_id == PROJECT_ID and result.event_type in EVENT_TYPES
