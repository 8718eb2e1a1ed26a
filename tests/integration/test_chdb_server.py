"""The dev-only chDB ClickHouse endpoint, driven over HTTP by the unmodified clickhouse-connect client.

One server process for the module (tmp data dir, free port); the last tests stop, SIGKILL and restart it
on the same data directory.
"""

from __future__ import annotations

import gzip
import signal
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from productgraph.localstack.clickhouse import clickhouse_ready, start_clickhouse
from productgraph.localstack.process import ServerProcess, free_port

pytestmark = pytest.mark.integration

DB = "pg_it"
N_EVENTS = 100_000
T0 = datetime(2025, 11, 25, 10, 0, 0, tzinfo=UTC)
EVENT_NAMES = ["page.view", "signup", "purchase", "logout"]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ChServer:
    """The server under test; restartable on the same data directory."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "clickhouse"
        self.port = free_port()
        self.proc: ServerProcess | None = None

    def start(self) -> None:
        self.proc = start_clickhouse(self.data_dir, self.port)

    @property
    def url(self) -> str:
        assert self.proc is not None
        return self.proc.url

    def client(self, database: str = DB, **kwargs: Any) -> Client:
        client: Client = clickhouse_connect.get_client(
            host="127.0.0.1",
            port=self.port,
            username="default",
            password="",
            database=database,
            compress=False,
            **kwargs,
        )
        return client

    def http(self, query: str = "", body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        url = f"http://127.0.0.1:{self.port}/?" + urllib.parse.urlencode({"query": query} if query else {})
        request = urllib.request.Request(url, data=body, headers=headers or {})
        with OPENER.open(request, timeout=30) as response:
            data: bytes = response.read()
            return data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChServer]:
    srv = ChServer(tmp_path_factory.mktemp("chdb"))
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.stop()


@pytest.fixture(scope="module")
def events(server: ChServer) -> Client:
    """Database + ReplacingMergeTree table, created through a client whose database does not exist yet."""
    client = server.client()
    client.command(f"CREATE DATABASE IF NOT EXISTS {DB}")
    client.command(
        """
        CREATE TABLE events (
            event_id UInt64,
            user_id String,
            event LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            props Map(String, String),
            revenue Nullable(Float64),
            referrer Nullable(String),
            version UInt32
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (event_id)
        """
    )
    rows = [
        [
            i,
            f"u{i % 1000}",
            EVENT_NAMES[i % 4],
            T0 + timedelta(milliseconds=i),
            {"plan": "pro" if i % 5 == 0 else "free", "i": str(i)},
            float(i) / 4 if i % 4 == 2 else None,
            None if i % 3 else f"ref{i % 7}",
            1,
        ]
        for i in range(N_EVENTS)
    ]
    columns = ["event_id", "user_id", "event", "ts", "props", "revenue", "referrer", "version"]
    summary = client.insert("events", rows, column_names=columns)
    assert summary.written_rows == N_EVENTS
    return client


def test_ping_probes_and_command(server: ChServer) -> None:
    assert clickhouse_ready(server.url)
    assert server.http() == b"Ok.\n"
    with OPENER.open(f"http://127.0.0.1:{server.port}/ping", timeout=5) as response:
        assert response.read() == b"Ok.\n"
    client = server.client(database="default")
    assert (client.server_version or "").startswith("26.")
    assert client.command("SELECT version(), timezone()") == [client.server_version, "UTC"]
    assert client.command("SELECT 1") == 1
    assert client.command("SELECT 'a', 2") == ["a", "2"]
    assert client.command("SELECT name FROM system.databases WHERE name = 'nope'") == ""


def test_native_insert_and_exact_read_back(events: Client) -> None:
    assert events.command("SELECT count() FROM events") == N_EVENTS
    stats = events.query(
        "SELECT count(), countIf(revenue IS NULL), countIf(referrer IS NOT NULL), uniqExact(user_id),"
        " countIf(props['plan'] = 'pro'), sum(revenue), min(ts), max(ts) FROM events"
    ).result_rows[0]
    assert stats[:5] == (N_EVENTS, N_EVENTS * 3 // 4, 33_334, 1000, N_EVENTS // 5)
    assert stats[5] == pytest.approx(sum(i / 4 for i in range(2, N_EVENTS, 4)))
    assert stats[6] == T0.replace(tzinfo=None)
    assert stats[7] == (T0 + timedelta(milliseconds=N_EVENTS - 1)).replace(tzinfo=None)
    row = events.query("SELECT * FROM events WHERE event_id = 12346").result_rows[0]
    assert row == (
        12346,
        "u346",
        "purchase",
        (T0 + timedelta(milliseconds=12346)).replace(tzinfo=None),
        {"plan": "free", "i": "12346"},
        12346 / 4,
        None,
        1,
    )
    by_event = events.query("SELECT event, count() FROM events GROUP BY event").result_rows
    assert {row[0]: row[1] for row in by_event} == dict.fromkeys(EVENT_NAMES, N_EVENTS // 4)


def test_server_side_parameters(events: Client) -> None:
    cutoff = T0 + timedelta(milliseconds=50_000)
    result = events.query(
        "SELECT count() FROM events"
        " WHERE event = {e:String} AND ts >= {t:DateTime64(3)} AND user_id IN {u:Array(String)}",
        parameters={"e": "signup", "t": cutoff, "u": ["u1", "u5", "u9"]},
    )
    users = ("u1", "u5", "u9")
    expected = sum(1 for i in range(50_000, N_EVENTS) if i % 4 == 1 and f"u{i % 1000}" in users)
    assert result.result_rows == [(expected,)]
    tricky = "it's a \\ back\tslash\nline 'quoted' ∑"
    assert events.query("SELECT {s:String}", parameters={"s": tricky}).result_rows == [(tricky,)]
    # Long parameters make clickhouse-connect switch to a multipart/form-data request.
    long_value = "x" * 20_000
    assert events.query("SELECT length({s:String})", parameters={"s": long_value}).result_rows == [(20_000,)]


def test_final_deduplicates_replacing_merge_tree(events: Client) -> None:
    events.command(
        "CREATE TABLE dedup (id UInt64, v String, version UInt32) ENGINE = ReplacingMergeTree(version) ORDER BY id"
    )
    events.insert("dedup", [[i, "old", 1] for i in range(1000)], column_names=["id", "v", "version"])
    events.insert("dedup", [[i, "new", 2] for i in range(0, 1000, 2)], column_names=["id", "v", "version"])
    assert events.command("SELECT count() FROM dedup") == 1500  # two parts, not merged yet
    final = events.query("SELECT v, count() FROM dedup FINAL GROUP BY v ORDER BY v").result_rows
    assert final == [("new", 500), ("old", 500)]


def test_settings_are_applied_and_unknown_ones_ignored(server: ChServer, events: Client) -> None:
    got = events.query("SELECT getSetting('max_threads')", settings={"max_threads": 3}).result_rows
    assert got == [(3,)]
    events.command(
        "CREATE TABLE tokens (id UInt64) ENGINE = MergeTree ORDER BY id"
        " SETTINGS non_replicated_deduplication_window = 100"
    )
    for _ in range(2):
        events.insert(
            "tokens", [[1], [2], [3]], column_names=["id"], settings={"insert_deduplication_token": "batch-1"}
        )
    events.insert("tokens", [[1], [2], [3]], column_names=["id"], settings={"insert_deduplication_token": "batch-2"})
    assert events.command("SELECT count() FROM tokens") == 6
    assert server.http("SELECT 42 SETTINGS max_threads = 1") == b"42\n"
    url = f"http://127.0.0.1:{server.port}/?no_such_setting=1&max_threads=2&database={DB}"
    with OPENER.open(urllib.request.Request(url, data=b"SELECT getSetting('max_threads')"), timeout=10) as response:
        assert response.read() == b"2\n"


def test_raw_http_inserts_query_in_url_gzip_and_chunked(server: ChServer, events: Client) -> None:
    events.command("CREATE TABLE raw (a UInt32, b String) ENGINE = MergeTree ORDER BY a")
    server.http(f"INSERT INTO {DB}.raw FORMAT CSV", b"1,one\n2,two\n")
    server.http("", f"INSERT INTO {DB}.raw FORMAT TSV\n3\tthree\n".encode())
    server.http(f"INSERT INTO {DB}.raw VALUES", b"(4, 'four')")
    body = gzip.compress(b"".join(b'{"a": %d, "b": "g"}\n' % i for i in range(10, 20)))
    server.http(f"INSERT INTO {DB}.raw FORMAT JSONEachRow", body, {"Content-Encoding": "gzip"})

    def chunks() -> Generator[bytes, None, None]:
        for i in range(100, 200):
            yield b"%d,c\n" % i

    events.raw_insert("raw", ["a", "b"], chunks(), fmt="CSV")  # a generator body: chunked transfer encoding
    assert events.query("SELECT count(), sum(a) FROM raw").result_rows == [
        (114, 1 + 2 + 3 + 4 + sum(range(10, 20)) + sum(range(100, 200)))
    ]
    assert events.query("SELECT b FROM raw WHERE a = 3").result_rows == [("three",)]


def test_errors_surface_as_database_error(events: Client) -> None:
    with pytest.raises(DatabaseError) as missing:
        events.query("SELECT * FROM no_such_table")
    assert missing.value.code == 60
    assert "UNKNOWN_TABLE" in str(missing.value)
    with pytest.raises(DatabaseError, match="SYNTAX_ERROR"):
        events.command("SELEC 1")
    with pytest.raises(DatabaseError, match=r"Code: 53|TYPE_MISMATCH|CANNOT_PARSE"):
        events.insert("raw", [["not-a-number", "x"]], column_names=["a", "b"], column_type_names=["String", "String"])
    assert events.command("SELECT count() FROM events") == N_EVENTS  # the connection is still usable


def test_database_param_before_create_database(server: ChServer) -> None:
    client = server.client(database="created_later")
    assert client.command("SELECT currentDatabase()") == "default"
    client.command("CREATE DATABASE created_later")
    client.command("CREATE TABLE t (x UInt8) ENGINE = Memory")
    assert client.command("SELECT database FROM system.tables WHERE name = 't'") == "created_later"
    assert client.command("SELECT currentDatabase()") == "created_later"


def test_concurrent_clients_and_a_slow_query(server: ChServer, events: Client) -> None:
    slow_started = threading.Event()

    def slow() -> float:
        client = server.client()
        slow_started.set()
        start = time.monotonic()
        client.command("SELECT sleep(3)")
        return time.monotonic() - start

    def worker(n: int) -> list[tuple[int, int, float]]:
        client = server.client()
        out = []
        for k in range(15):
            start = time.monotonic()
            user = f"u{(n * 15 + k) % 1000}"
            got = client.query("SELECT count() FROM events WHERE user_id = {u:String}", parameters={"u": user})
            out.append((n * 15 + k, got.result_rows[0][0], time.monotonic() - start))
        return out

    with ThreadPoolExecutor(9) as pool:
        slow_future = pool.submit(slow)
        slow_started.wait(5)
        results = [r for f in [pool.submit(worker, n) for n in range(8)] for r in f.result()]
        assert slow_future.result() >= 3.0
    assert len(results) == 120
    assert all(count == N_EVENTS // 1000 for _, count, _ in results)
    assert max(elapsed for _, _, elapsed in results) < 2.0  # never queued behind the 3 s query


def test_window_funnel(events: Client) -> None:
    events.command(
        "CREATE TABLE funnel (user_id UInt32, event String, ts DateTime64(3, 'UTC'))"
        " ENGINE = MergeTree ORDER BY (user_id, ts)"
    )
    steps = ["view", "cart", "buy"]
    rows: list[list[Any]] = []
    expected: dict[int, int] = {}
    tick = 0
    for user in range(300):
        depth = user % 4  # 0..3 steps reached, each 10 s apart; strictly increasing timestamps
        gap = 10 if user % 7 else 4000  # every 7th user is too slow: only the first step counts
        for step in range(depth):
            tick += 1
            rows.append([user, steps[step], T0 + timedelta(seconds=step * gap, milliseconds=tick)])
        expected[user] = min(depth, 1) if gap > 3600 else depth
    events.insert("funnel", rows, column_names=["user_id", "event", "ts"])
    steps_sql = "event = 'view', event = 'cart', event = 'buy'"
    funnel = f"windowFunnel(3600000)(toUInt64(toUnixTimestamp64Milli(ts)), {steps_sql})"
    got = events.query(f"SELECT user_id, {funnel} FROM funnel GROUP BY user_id ORDER BY user_id").result_rows
    assert {row[0]: row[1] for row in got} == {u: level for u, level in expected.items() if u % 4}
    by_level = events.query(
        f"SELECT level, count() FROM (SELECT {funnel} AS level FROM funnel GROUP BY user_id) GROUP BY level"
    ).result_rows
    levels = {row[0]: row[1] for row in by_level}
    counted: dict[int, int] = {}
    for u, level in expected.items():
        if u % 4:
            counted[level] = counted.get(level, 0) + 1
    assert levels == counted


@pytest.mark.timeout(180)
def test_insert_throughput_1m_rows_x_10_columns(server: ChServer, events: Client) -> None:
    events.command(
        "CREATE TABLE bulk (id UInt64, user_id String, event LowCardinality(String), ts DateTime64(3, 'UTC'),"
        " a Int32, b Float64, c String, d UInt8, e Nullable(Int64), f DateTime)"
        " ENGINE = MergeTree ORDER BY id"
    )
    columns = ["id", "user_id", "event", "ts", "a", "b", "c", "d", "e", "f"]

    def data(start: int, n: int) -> list[list[Any]]:
        ids = range(start, start + n)
        naive = datetime(2025, 11, 25, 10, 0, 0)
        return [
            list(ids),
            [f"user-{i % 5000}" for i in ids],
            [EVENT_NAMES[i % 4] for i in ids],
            [naive + timedelta(milliseconds=i) for i in ids],
            [i % 100_000 for i in ids],
            [i * 0.5 for i in ids],
            [f"c{i % 97}" for i in ids],
            [i % 256 for i in ids],
            [None if i % 10 == 0 else i for i in ids],
            [naive] * n,
        ]

    probe = data(0, 100_000)
    start = time.monotonic()
    events.insert("bulk", probe, column_names=columns, column_oriented=True)
    probe_rate = 100_000 / (time.monotonic() - start)
    if 1_000_000 / probe_rate > 20:
        pytest.skip(f"1M-row insert would take ~{1_000_000 / probe_rate:.0f}s here ({probe_rate:,.0f} rows/s)")
    big = data(100_000, 1_000_000)
    start = time.monotonic()
    summary = events.insert("bulk", big, column_names=columns, column_oriented=True)
    elapsed = time.monotonic() - start
    rate = 1_000_000 / elapsed
    print(f"\nchDB HTTP insert: 1,000,000 rows x 10 columns in {elapsed:.2f}s = {rate:,.0f} rows/s")
    assert summary.written_rows == 1_000_000
    assert events.command("SELECT count(), countIf(e IS NULL) FROM bulk") == ["1100000", "110000"]


def test_data_survives_stop_and_restart(server: ChServer, events: Client) -> None:
    assert server.proc is not None
    server.proc.stop()
    assert server.proc.popen.returncode == 0  # clean exit on SIGTERM
    server.start()
    client = server.client()
    assert client.command("SELECT count() FROM events") == N_EVENTS
    assert client.query("SELECT v, count() FROM dedup FINAL GROUP BY v ORDER BY v").result_rows == [
        ("new", 500),
        ("old", 500),
    ]


def test_data_survives_sigkill_and_restart(server: ChServer) -> None:
    client = server.client()
    client.insert("raw", [[1000 + i, "after-restart"] for i in range(500)], column_names=["a", "b"])
    before = client.query("SELECT count(), sum(a) FROM raw").result_rows
    assert server.proc is not None
    server.proc.stop_signal = signal.SIGKILL
    server.proc.stop()
    assert server.proc.popen.returncode == -signal.SIGKILL
    server.start()
    client = server.client()
    assert client.query("SELECT count(), sum(a) FROM raw").result_rows == before
    assert client.command("SELECT count() FROM events") == N_EVENTS
