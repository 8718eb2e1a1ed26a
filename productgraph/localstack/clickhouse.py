"""Launch the dev-only chDB-backed ClickHouse HTTP endpoint (:mod:`productgraph.localstack.chdb_server`)."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from productgraph.localstack.process import ServerProcess, spawn, wait_until

__all__ = ["clickhouse_ready", "start_clickhouse"]


def clickhouse_ready(url: str) -> bool:
    """True when the ClickHouse HTTP interface at ``url`` (``http://user:pw@host:port``) answers ``/ping``."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy
    try:
        with opener.open(f"{parts.scheme}://{host}:{parts.port or 8123}/ping", timeout=1) as response:
            return bool(response.status == 200 and response.read().startswith(b"Ok."))
    except OSError:
        return False


def start_clickhouse(data_dir: Path, port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> ServerProcess:
    """Start the chDB server owning ``data_dir``; return once ``/ping`` answers.

    The log goes to ``data_dir.parent / "logs" / "clickhouse.log"``; ``url`` is ``http://default:@HOST:PORT``.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://default:@{host}:{port}"
    args = [sys.executable, "-m", "productgraph.localstack.chdb_server"]
    args += ["--path", str(data_dir), "--host", host, "--port", str(port)]
    proc = spawn("clickhouse", args, data_dir.parent / "logs" / "clickhouse.log", url)
    try:
        wait_until(lambda: clickhouse_ready(url), timeout, "clickhouse (chDB)", proc)
    except BaseException:
        proc.stop()
        raise
    return proc
