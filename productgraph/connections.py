"""Client factories for the servers, from the URLs of :class:`~productgraph.settings.ServerSettings`."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouseTarget", "clickhouse_client", "parse_clickhouse_url"]


class ClickHouseTarget:
    """The parts of ``http(s)://user:password@host:port/database``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"PG_CLICKHOUSE_URL must look like http://user:password@host:8123/db, got {url!r}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (8443 if self.secure else 8123)
        self.username = unquote(parts.username or "default")
        self.password = unquote(parts.password or "")
        self.database = parts.path.strip("/") or "productgraph"


def parse_clickhouse_url(url: str) -> ClickHouseTarget:
    return ClickHouseTarget(url)


def clickhouse_client(url: str, *, compress: bool = False, database: str | None = "", **settings: object) -> Client:
    """A clickhouse-connect HTTP client.  ``database=None`` connects without selecting a database."""
    t = ClickHouseTarget(url)
    client: Client = clickhouse_connect.get_client(
        host=t.host,
        port=t.port,
        username=t.username,
        password=t.password,
        database=(t.database if database == "" else database) or "default",
        secure=t.secure,
        compress=compress,
        settings=settings or None,
        connect_timeout=5,
        send_receive_timeout=60,
        autogenerate_session_id=False,  # one client is shared by threads: no server session
    )
    return client
