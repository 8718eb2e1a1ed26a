"""Real servers for the integration tests, one per kind per test session.

Each server is picked, in order: an explicit URL from the environment (``PG_TEST_KAFKA_BOOTSTRAP``,
``PG_TEST_CLICKHOUSE_URL``, ``PG_TEST_POSTGRES_ADMIN_DSN``, ``PG_TEST_REDIS_URL``), else a testcontainers
container when a Docker engine answers, else the embedded local-stack server from the wheels.  Servers
started here are stopped here.  Unit tests never touch these fixtures.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from productgraph.localstack.process import free_port


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return os.environ.get("PG_TEST_NO_DOCKER") != "1" and _docker_available()


@pytest.fixture(scope="session")
def server_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def kafka_bootstrap(docker_available: bool, server_root: Path) -> Iterator[str]:
    if url := os.environ.get("PG_TEST_KAFKA_BOOTSTRAP"):
        yield url
    elif docker_available:
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        from productgraph.localstack.kafka import start_kafka

        proc = start_kafka(free_port(), logs_dir=server_root / "logs")
        try:
            yield proc.url
        finally:
            proc.stop()


@pytest.fixture(scope="session")
def clickhouse_server(docker_available: bool, server_root: Path) -> Iterator[str]:
    """``http://user:password@host:port`` without a database."""
    if url := os.environ.get("PG_TEST_CLICKHOUSE_URL"):
        yield url.rstrip("/")
    elif docker_available:
        from testcontainers.clickhouse import ClickHouseContainer

        with ClickHouseContainer() as ch:
            yield f"http://{ch.username}:{ch.password}@{ch.get_container_host_ip()}:{ch.get_exposed_port(8123)}"
    else:
        from productgraph.localstack.clickhouse import start_clickhouse

        proc = start_clickhouse(server_root / "clickhouse", free_port())
        try:
            yield proc.url.rstrip("/")
        finally:
            proc.stop()


@pytest.fixture(scope="session")
def postgres_admin_dsn(docker_available: bool, server_root: Path) -> Iterator[str]:
    if url := os.environ.get("PG_TEST_POSTGRES_ADMIN_DSN"):
        yield url
    elif docker_available:
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18", driver=None) as pg:
            yield pg.get_connection_url()
    else:
        from productgraph.localstack.postgres import start_postgres

        proc = start_postgres(server_root / "postgres", free_port(), logs_dir=server_root / "logs")
        try:
            yield proc.url
        finally:
            proc.stop()


@pytest.fixture(scope="session")
def redis_url(docker_available: bool, server_root: Path) -> Iterator[str]:
    if url := os.environ.get("PG_TEST_REDIS_URL"):
        yield url
    elif docker_available:
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as r:
            yield f"redis://{r.get_container_host_ip()}:{r.get_exposed_port(6379)}/0"
    else:
        from productgraph.localstack.redis import start_redis

        proc = start_redis(server_root / "redis", free_port(), logs_dir=server_root / "logs")
        try:
            yield proc.url
        finally:
            proc.stop()


@dataclass(frozen=True)
class Servers:
    """Migrated servers plus the settings environment a service would get."""

    kafka_bootstrap: str
    clickhouse_url: str
    postgres_admin_dsn: str
    postgres_dsn: str
    redis_url: str

    def env(self) -> dict[str, str]:
        return {
            "PG_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "PG_CLICKHOUSE_URL": self.clickhouse_url,
            "PG_POSTGRES_DSN": self.postgres_dsn,
            "PG_POSTGRES_ADMIN_DSN": self.postgres_admin_dsn,
            "PG_REDIS_URL": self.redis_url,
        }


@pytest.fixture(scope="session")
def migrated_postgres(postgres_admin_dsn: str) -> tuple[str, str]:
    """(admin DSN, app DSN) with every migration applied."""
    from urllib.parse import quote, urlsplit, urlunsplit

    from productgraph.migrate import APP_ROLE, migrate_postgres

    password = secrets.token_urlsafe(16)
    migrate_postgres(postgres_admin_dsn, password)
    p = urlsplit(postgres_admin_dsn)
    app = urlunsplit((p.scheme, f"{APP_ROLE}:{quote(password)}@{p.hostname}:{p.port}", p.path, "", ""))
    return postgres_admin_dsn, app


@pytest.fixture(scope="session")
def migrated_clickhouse(clickhouse_server: str) -> str:
    from productgraph.migrate import migrate_clickhouse

    url = f"{clickhouse_server}/pgtest_{secrets.token_hex(4)}"
    migrate_clickhouse(url)
    return url


@pytest.fixture(scope="session")
def servers(
    kafka_bootstrap: str, migrated_clickhouse: str, migrated_postgres: tuple[str, str], redis_url: str
) -> Servers:
    import asyncio

    from productgraph.migrate import ensure_all_topics

    asyncio.run(ensure_all_topics(kafka_bootstrap))
    return Servers(kafka_bootstrap, migrated_clickhouse, migrated_postgres[0], migrated_postgres[1], redis_url)


@pytest.fixture
def tenant(servers: Servers) -> dict[str, str]:
    """A fresh org with a project, API key and admin token."""
    from productgraph.admin import bootstrap_org

    slug = f"t{secrets.token_hex(5)}"
    b = bootstrap_org(servers.postgres_dsn, f"Org {slug}", slug, f"Project {slug}", slug)
    return {
        "org_id": b.org_id,
        "project_id": b.project_id,
        "project_slug": b.project_slug,
        "api_key": b.api_key,
        "admin_token": b.admin_token,
    }
