"""Configuration by environment: one pydantic-settings class per service.

Every variable carries the ``PG_`` prefix.  A server given by URL (``PG_KAFKA_BOOTSTRAP``,
``PG_CLICKHOUSE_URL``, ``PG_POSTGRES_DSN``, ``PG_REDIS_URL``) is used as is; the local stack
fills them in for the processes it starts.  Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    """Where the four servers are.  Shared by every service settings class."""

    model_config = SettingsConfigDict(env_prefix="PG_", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_idempotence: bool = Field(
        False, description="aiokafka enable_idempotence; on for Apache Kafka, off for the local Tansu broker"
    )
    clickhouse_url: str = Field(
        "http://default:@127.0.0.1:8123/productgraph",
        description="ClickHouse HTTP URL with the database as path",
    )
    clickhouse_compress: bool = Field(False, description="HTTP compression (off for the local chDB endpoint)")
    postgres_dsn: str = Field(
        "postgresql://productgraph_app:productgraph_app@127.0.0.1:5432/productgraph",
        description="DSN of the application role (no BYPASSRLS, owns nothing)",
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    events_topic_partitions: int = Field(6, description="partitions of the events topic when creating it")
    log_level: str = "INFO"
    gc_freeze: bool = Field(
        True, description="after start-up, move every object to the GC's permanent generation (productgraph.runtime)"
    )
    gc_gen0_threshold: int = Field(100_000, description="allocations between young-generation collections")


class MigrateSettings(ServerSettings):
    """``productgraph migrate``: needs the owner DSN to create roles, tables and policies."""

    postgres_admin_dsn: str = Field(
        "postgresql://postgres@127.0.0.1:5432/productgraph",
        description="DSN of the schema owner, used only by migrations",
    )
    postgres_app_password: str = Field("productgraph_app", description="password set for the app role")
    clickhouse_cluster: str | None = Field(
        None,
        description="ClickHouse cluster name: tables become Replicated*MergeTree behind Distributed tables "
        "sharded by project (unset: one server)",
    )
    kafka_replication_factor: int = Field(
        1, description="replication factor of the topics migrate creates (3 in production)"
    )


class StackSettings(MigrateSettings):
    """``productgraph up``: the embedded local stack."""

    data_dir: Path = Field(Path(".productgraph"), description="where the local servers keep their data")
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    query_api_port: int = 8090
    processors_per_kind: int = Field(1, description="processes started per processor kind")
    demo_events: int = Field(300, description="synthetic events sent through the gateway at start (0: none)")
