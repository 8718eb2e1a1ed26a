"""Processor configuration (``PG_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from productgraph.settings import ServerSettings


class ProcessorSettings(ServerSettings):
    batch_max_records: int = Field(20_000, description="flush a batch at this many records")
    batch_max_age_s: float = Field(0.5, description="... or when its oldest record is this old")
    batch_grow_records: int = Field(
        80_000,
        description="a due batch keeps taking the records already fetched while the previous one is still "
        "being written, up to this many (then it waits for that write)",
    )
    gc_gen0_threshold: int = Field(
        500_000,
        description="net allocations between young-generation collections: above what a batch keeps alive (a "
        "few objects per record, up to batch_grow_records), so that most of it is freed after its flush before "
        "a collection scans it (at 100,000 collections took ~8% of the sessions kind's CPU with grown batches)",
    )
    metrics_port: int = Field(0, description="port of /metrics, /health and /ready (0: none)")
    metrics_host: str = "127.0.0.1"
    consumer_group_prefix: str = Field(
        "productgraph", description="consumer group of a kind: <prefix>-<kind> (one group per kind)"
    )
    session_timeout_minutes: int = Field(
        30, description="inactivity that ends a session segment, for projects without their own setting"
    )
    session_max_hours: float = Field(24.0, description="a segment ends at this length")
    session_ttl_s: int = Field(35 * 60, description="TTL of live session keys in Redis (timeout + 5 min)")
    session_late_horizon_s: int = Field(
        24 * 3600,
        description="closed segments ending this long before a session's newest event are sealed (final): "
        "bounds the live state of long-lived session ids; later events into them count in the warehouse only",
    )
    retry_max_backoff_s: float = 5.0
    project_config_refresh_s: float = Field(
        5.0,
        description="sessions: how often a project's session timeout and journeys are re-read from Postgres "
        "(a change is used within about this long; while Postgres is down the cached ones stay in use)",
    )
