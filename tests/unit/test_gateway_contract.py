"""The POST /v1/events contract, row by row, and the seed's acceptance ideas 1-14, on in-memory adapters.

Every row of the response table of ../shared/design/event-contract.md and each idea of
../shared/seed/productgraph-spec.md §8 (1-14) has a test here; where we decided differently from the
seed, the test says so.  The same app runs on real servers in tests/integration/test_gateway_*.py.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib

import orjson
import pytest
import zstandard

from schemas.fields import EVENT_TYPES
from tests.unit.test_gateway_support import KEY, PROJECT_ID, SLUG, event, gateway, now_iso

RESULT_KEYS = {"accepted", "rejected", "duplicates", "errors"}


# ---- 202 ---------------------------------------------------------------------------------------------
async def test_202_partial_batch_answers_per_event_and_publishes_only_good_ones() -> None:
    async with gateway() as gw:
        events = [event(0), event(1, **{"session.id": ...}), event(2, **{"event.type": "foo"}), event(3)]
        resp = await gw.post({"events": events})
        assert resp.status_code == 202
        assert resp.json() == {
            "accepted": 2,
            "rejected": 2,
            "duplicates": 0,
            "errors": [
                {"index": 1, "error": "session.id: required"},
                {"index": 2, "error": "event.type: unknown type 'foo'"},
            ],
        }
        assert [r.event_id for r in gw.kafka.records] == ["e-0", "e-3"]
        assert {r.project_id for r in gw.kafka.records} == {PROJECT_ID}


async def test_seed_1_batch_of_1000_accepted_and_1001_rejected_whole() -> None:
    async with gateway() as gw:
        ok = await gw.post({"events": [event(i) for i in range(1000)]})
        assert ok.status_code == 202 and ok.json()["accepted"] == 1000
        too_many = await gw.post({"events": [event(i) for i in range(1000, 2001)]})
        assert too_many.status_code == 400 and "batch too large" in too_many.json()["error"]
        assert len(gw.kafka.records) == 1000  # nothing of the 1001 stored


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{not json", "body: invalid JSON"),
        (b"", "body: invalid JSON"),
        (b"[1, 2]", "body: must be a JSON object with an 'events' list"),
        (b'"events"', "body: must be a JSON object with an 'events' list"),
        (b'{"events": {"a": 1}}', "events: must be a list"),
        (b'{"evnts": []}', "events: must be a list"),
    ],
)
async def test_400_unusable_bodies(content: bytes, error: str) -> None:
    async with gateway() as gw:
        resp = await gw.post(content=content, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.json() == {"error": error}
        assert gw.kafka.records == []


async def test_seed_2_non_json_400_get_405_options_204_with_cors() -> None:
    async with gateway() as gw:
        assert (await gw.post(content=b"hello")).status_code == 400
        assert (await gw.client.get("/v1/events")).status_code == 405
        assert (await gw.client.put("/v1/events", content=b"{}")).status_code == 405
        pre = await gw.client.options(
            "/v1/events",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
        assert pre.headers["access-control-allow-credentials"] == "true"
        allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert {"x-pg-api-key", "content-type", "content-encoding"} <= allowed
        assert "POST" in pre.headers["access-control-allow-methods"]


async def test_seed_3_empty_batch_202_with_errors_always_present() -> None:
    async with gateway() as gw:
        resp = await gw.post({"events": []})
        assert resp.status_code == 202
        assert resp.json() == {"accepted": 0, "rejected": 0, "duplicates": 0, "errors": []}


async def test_seed_4_missing_session_id() -> None:
    async with gateway() as gw:
        resp = await gw.post({"events": [event(0), event(1, **{"session.id": ...})]})
        assert resp.json() == {
            "accepted": 1,
            "rejected": 1,
            "duplicates": 0,
            "errors": [{"index": 1, "error": "session.id: required"}],
        }


@pytest.mark.parametrize(
    ("missing", "error"),
    [
        (("event_id", "project_id", "session.id", "event.type"), "event_id: required"),
        (("project_id", "session.id", "event.type"), "project_id: required"),
        (("session.id", "event.type"), "session.id: required"),
        (("event.type",), "event.type: required"),
    ],
)
async def test_seed_5_only_first_missing_field_in_seed_order(missing: tuple[str, ...], error: str) -> None:
    async with gateway() as gw:
        resp = await gw.post({"events": [event(0, **dict.fromkeys(missing, ...))]})
        assert resp.json()["errors"] == [{"index": 0, "error": error}]


async def test_seed_6_missing_timestamp_stamped_and_flagged_configurable() -> None:
    async with gateway() as gw:
        resp = await gw.post({"events": [event(0, **{"event.timestamp": ...})]})
        assert resp.json()["accepted"] == 1
        rec = gw.kafka.records[0]
        assert rec.ts_filled and rec.client_ts_ms is None and rec.ts_ms == rec.received_ms
    async with gateway({"fill_missing_timestamp": False}) as gw:
        resp = await gw.post({"events": [event(0, **{"event.timestamp": ...})]})
        assert resp.json()["errors"] == [{"index": 0, "error": "event.timestamp: required"}]


async def test_seed_7_malformed_timestamp_is_per_event_not_400_and_both_rfc3339_forms_parse() -> None:
    # ours: the seed answers 400 for the whole request; we reject only the event
    async with gateway() as gw:
        events = [
            event(0, **{"event.timestamp": "yesterday"}),
            event(1, **{"event.timestamp": "2026-11-25T10:00:00Z"}),
            event(2, **{"event.timestamp": "2026-11-25T10:00:00.123456789Z"}),
        ]
        resp = await gw.post({"events": events})
        assert resp.status_code == 202
        assert resp.json()["errors"] == [{"index": 0, "error": "event.timestamp: invalid RFC3339 timestamp"}]
        assert resp.json()["accepted"] == 2


async def test_timestamps_skew_correction_future_limit_and_kept_times() -> None:
    async with gateway() as gw:
        # the client's clock is one hour behind: sent_at and the event time are both an hour early
        events = [
            event(0, **{"event.timestamp": now_iso(-3600 - 5)}),
            event(1, **{"event.timestamp": now_iso(22 * 3600)}),
        ]
        resp = await gw.post({"events": events, "sent_at": now_iso(-3600)})
        assert resp.json()["accepted"] == 2
        corrected = gw.kafka.records[0]
        assert corrected.client_ts_ms is not None
        assert abs(corrected.ts_ms - (corrected.received_ms - 5000)) < 2000  # original + skew
        assert corrected.ts_ms - corrected.client_ts_ms == pytest.approx(3600_000, abs=2000)
        future = await gw.post({"events": [event(2, **{"event.timestamp": now_iso(23 * 3600 + 60)})]})
        assert future.json()["errors"] == [{"index": 0, "error": "event.timestamp: more than 23 h in the future"}]
        bad_sent_at = await gw.post({"events": [event(3)], "sent_at": "soon"})  # ignored, not a 400
        assert bad_sent_at.status_code == 202 and bad_sent_at.json()["accepted"] == 1


async def test_seed_8_all_18_types_accepted_unknown_rejected_per_event() -> None:
    # ours: the seed accepts any type; the 15 seed types plus the SDK's 3 are stored as sent (dotted)
    async with gateway() as gw:
        events = [event(i, **{"event.type": t}) for i, t in enumerate(sorted(EVENT_TYPES))]
        events.append(event(99, **{"event.type": "page_view"}))
        resp = await gw.post({"events": events})
        assert resp.json()["accepted"] == 18
        assert resp.json()["errors"] == [{"index": 18, "error": "event.type: unknown type 'page_view'"}]
        assert {r.event_type for r in gw.kafka.records} == EVENT_TYPES


async def test_seed_9_auth_project_match_and_product_id_alias() -> None:
    async with gateway() as gw:
        missing = await gw.post({"events": []}, key=None)
        assert missing.status_code == 401 and "missing API key" in missing.json()["error"]
        unknown = await gw.post({"events": []}, key="pgk_nope")
        assert unknown.status_code == 401 and unknown.json() == {"error": "unknown or revoked API key"}
        bearer = await gw.post({"events": [event(0)]}, key=None, headers={"Authorization": f"Bearer {KEY}"})
        assert bearer.status_code == 202 and bearer.json()["accepted"] == 1
        events = [
            event(1, project_id="other-project"),
            event(2, project_id=..., product_id=SLUG),
            event(3, project_id=PROJECT_ID),
        ]
        resp = await gw.post({"events": events})
        assert resp.json()["errors"] == [{"index": 0, "error": "project_id: does not match the API key's project"}]
        assert resp.json()["accepted"] == 2
        assert all(r.org_id == gw.kafka.records[0].org_id for r in gw.kafka.records)


async def test_revoked_key_stops_within_the_cache_ttl() -> None:
    async with gateway({"key_cache_ttl_s": 0.2}) as gw:
        assert (await gw.post({"events": []})).status_code == 202
        del gw.keys.keys[KEY]  # revoked in the key store
        assert (await gw.post({"events": []})).status_code == 202  # still cached
        await asyncio.sleep(0.3)
        assert (await gw.post({"events": []})).status_code == 401


async def test_key_lookups_are_cached_and_shared() -> None:
    async with gateway() as gw:
        await asyncio.gather(*(gw.post({"events": [event(i)]}) for i in range(20)))
        await gw.post({"events": []}, key="pgk_unknown")
        await gw.post({"events": []}, key="pgk_unknown")
        assert gw.keys.lookups == 2  # one per key: concurrent misses share it, unknown keys are cached too


async def test_seed_10_body_over_10_mb_413_and_event_over_100_kb_per_event() -> None:
    async with gateway({"max_body_bytes": 200_000}) as gw:
        big = await gw.post(content=b'{"events": [' + b" " * 300_000 + b"]}")
        assert big.status_code == 413
        bomb = gzip.compress(b'{"events": [' + b" " * 5_000_000 + b"]}")
        gz = await gw.post(content=bomb, headers={"Content-Encoding": "gzip"})
        assert gz.status_code == 413
        events = [event(0), event(1, metadata={"blob": "x" * 110_000}), event(2)]
        resp = await gw.post({"events": events})
        assert resp.json()["errors"] == [{"index": 1, "error": "event: larger than 100 KB"}]
        assert resp.json()["accepted"] == 2


async def test_slow_body_gets_400_after_the_body_timeout() -> None:
    async def trickle():  # type: ignore[no-untyped-def]
        yield b'{"events": ['
        await asyncio.sleep(1.0)
        yield b"]}"

    async with gateway({"body_timeout_s": 0.2}) as gw:
        resp = await gw.post(content=trickle())
        assert resp.status_code == 400 and resp.json() == {"error": "body: not received within 0.2 s"}


async def test_compressed_bodies_gzip_deflate_zstd() -> None:
    async with gateway() as gw:
        for i, (encoding, pack) in enumerate(
            [("gzip", gzip.compress), ("deflate", zlib.compress), ("zstd", zstandard.ZstdCompressor().compress)]
        ):
            body = orjson.dumps({"events": [event(i)]})
            resp = await gw.post(content=pack(body), headers={"Content-Encoding": encoding})
            assert resp.status_code == 202 and resp.json()["accepted"] == 1, encoding
        corrupt = await gw.post(content=b"\x1f\x8b not gzip", headers={"Content-Encoding": "gzip"})
        assert corrupt.status_code == 400 and corrupt.json() == {"error": "body: invalid gzip data"}


async def test_415_content_type_and_encoding() -> None:
    async with gateway() as gw:
        xml = await gw.post(content=b"<x/>", headers={"Content-Type": "application/xml"})
        assert xml.status_code == 415
        form = await gw.post(content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        br = await gw.post(content=b"{}", headers={"Content-Type": "application/json", "Content-Encoding": "br"})
        assert br.status_code == 415
        # sendBeacon posts text/plain; a charset parameter is fine
        beacon = await gw.post(content=orjson.dumps({"events": [event(0)]}), headers={"Content-Type": "text/plain"})
        assert beacon.status_code == 202
        utf8 = await gw.post(
            content=orjson.dumps({"events": []}), headers={"Content-Type": "application/json; charset=utf-8"}
        )
        assert utf8.status_code == 202


async def test_seed_11_duplicates_reported_and_published_once() -> None:
    async with gateway() as gw:
        first = await gw.post({"events": [event(0), event(1)]})
        assert first.json() == {"accepted": 2, "rejected": 0, "duplicates": 0, "errors": []}
        await asyncio.sleep(0.05)  # the confirmation runs after the answer
        retry = await gw.post({"events": [event(0), event(1), event(2), event(2)]})
        assert retry.json() == {"accepted": 1, "rejected": 0, "duplicates": 3, "errors": []}
        assert sorted(r.event_id for r in gw.kafka.records) == ["e-0", "e-1", "e-2"]


async def test_failed_publish_leaves_ids_unseen_so_the_retry_is_published() -> None:
    async with gateway() as gw:
        gw.kafka.fail = True
        down = await gw.post({"events": [event(0)]})
        assert down.status_code == 503
        await asyncio.sleep(0.05)
        gw.kafka.fail = False
        retry = await gw.post({"events": [event(0)]})
        assert retry.json()["accepted"] == 1 and retry.json()["duplicates"] == 0
        await asyncio.sleep(0.05)
        again = await gw.post({"events": [event(0)]})
        assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 1


async def test_dedup_window_per_project_and_zero_turns_it_off() -> None:
    async with gateway(dedup_window_s=0) as gw:
        for _ in range(2):
            assert (await gw.post({"events": [event(0)]})).json()["accepted"] == 1
            await asyncio.sleep(0.02)
        assert len(gw.kafka.records) == 2
    async with gateway(dedup_window_s=60) as gw:
        await gw.post({"events": [event(0)]})
        await asyncio.sleep(0.02)
        assert len(gw.admission.values) == 2  # the event id and the confirmed request token
        for _, expires in gw.admission.values.values():
            assert expires - gw.admission.now_ms == pytest.approx(60_000, abs=50)


async def test_seed_12_rate_limit_429_with_retry_after_per_project_setting() -> None:
    async with gateway(rate_limit_per_s=500) as gw:  # bucket: 2 s of the rate, at least one batch of 1000
        ok = await gw.post({"events": [event(i) for i in range(1000)]})
        assert ok.status_code == 202
        limited = await gw.post({"events": [event(i) for i in range(1000, 1500)]})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["accepted"] == 0
        assert len(gw.kafka.records) == 1000


async def test_seed_13_kafka_failure_503_retry_after_nothing_accepted() -> None:
    # ours: 503 (retry later), not the seed's 500
    async with gateway() as gw:
        gw.kafka.fail = True
        resp = await gw.post({"events": [event(0), event(1)]})
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "5"
        assert resp.json() == {"error": "event stream unavailable, retry later", "accepted": 0}


async def test_503_when_the_key_store_is_down_and_when_overloaded() -> None:
    async with gateway() as gw:
        gw.keys.down = True
        resp = await gw.post({"events": [event(0)]})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    async with gateway({"max_in_flight_requests": 0}) as gw:
        resp = await gw.post({"events": [event(0)]}, headers={"Origin": "https://a.example"})
        assert resp.status_code == 503 and "retry-after" in resp.headers
        assert resp.headers["access-control-allow-origin"] == "https://a.example"  # the SDK can read it
        assert gw.kafka.records == []


async def test_503_when_too_many_body_bytes_are_in_flight() -> None:
    async with gateway({"max_in_flight_body_bytes": 2000}) as gw:
        gw.kafka.delay = 0.2
        batches = [{"events": [event(10 * r + i) for i in range(5)]} for r in range(4)]  # ~900 bytes each
        answers = await asyncio.gather(*(gw.post(b) for b in batches))
        statuses = sorted(a.status_code for a in answers)
        assert statuses[0] == 202 and statuses[-1] == 503
        assert len(gw.kafka.records) == 5 * statuses.count(202)


async def test_redis_down_fails_open() -> None:
    async with gateway() as gw:
        gw.admission.fail = True
        resp = await gw.post({"events": [event(0)]})
        assert resp.status_code == 202 and resp.json()["accepted"] == 1


async def test_seed_14_health_and_ready() -> None:
    async with gateway() as gw:
        assert (await gw.client.get("/health")).json() == {"status": "ok"}
        assert (await gw.client.get("/ready")).json() == {"status": "ready"}
        gw.kafka.fail = True
        down = await gw.client.get("/ready")
        assert down.status_code == 503 and down.json() == {"status": "unavailable", "down": ["kafka"]}


async def test_cors_reflects_origin_and_enforces_the_project_allow_list() -> None:
    origin = {"Origin": "https://shop.example.com"}
    async with gateway() as gw:  # no allow-list: any origin
        resp = await gw.post({"events": [event(0)]}, headers=origin)
        assert resp.status_code == 202
        assert resp.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert resp.headers["access-control-allow-credentials"] == "true"
        assert "retry-after" in resp.headers["access-control-expose-headers"].lower()
        assert "access-control-allow-origin" not in (await gw.post({"events": []})).headers
    async with gateway(cors_origins=["https://shop.example.com/"]) as gw:
        assert (await gw.post({"events": [event(0)]}, headers=origin)).status_code == 202
        other = await gw.post({"events": [event(1)]}, headers={"Origin": "https://evil.example"})
        assert other.status_code == 401 and "not allowed" in other.json()["error"]
        assert len(gw.kafka.records) == 1
        server_side = await gw.post({"events": [event(2)]})  # no Origin: not a browser, not subject
        assert server_side.status_code == 202


async def test_unknown_fields_kept_and_counted_metadata_kept() -> None:
    async with gateway() as gw:
        resp = await gw.post(
            {"events": [event(0, **{"sdk.new": "x", "nested.obj": {"a": [1]}}, metadata={"k": {"v": 1}})]}
        )
        assert resp.json()["accepted"] == 1
        rec = gw.kafka.records[0]
        assert rec.extra == {"sdk.new": "x", "nested.obj": '{"a":[1]}'} and rec.metadata == {"k": {"v": 1}}
        metrics = (await gw.client.get("/metrics")).text
        assert "productgraph_gateway_unknown_fields_total" in metrics
        assert 'productgraph_gateway_events_total{outcome="accepted"}' in metrics
        assert 'productgraph_gateway_requests_total{status="202"}' in metrics
        assert "productgraph_gateway_produce_seconds_bucket" in metrics
        assert "productgraph_gateway_batch_events_bucket" in metrics


async def test_openapi_documents_the_contract_with_examples() -> None:
    async with gateway() as gw:
        spec = (await gw.client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/events"]["post"]
    assert set(op["responses"]) >= {"202", "400", "401", "405", "413", "415", "429", "503"}
    assert op["requestBody"]["content"]["application/json"]["examples"]
    assert op["responses"]["202"]["content"]["application/json"]["examples"]
    assert "Retry-After" in op["responses"]["429"]["headers"] and "Retry-After" in op["responses"]["503"]["headers"]
    event_schema = spec["components"]["schemas"]["Event"]
    assert event_schema["additionalProperties"] is True
    assert set(event_schema["properties"]["event.type"]["enum"]) == EVENT_TYPES
    assert event_schema["properties"]["api.status_code"]["type"] == "integer"
    assert event_schema["properties"]["ui.scroll.position"]["maximum"] == 1
    assert "options" in spec["paths"]["/v1/events"]
    assert SLUG  # the example project in the fakes
