"""The whole stack as separate processes, started the way a user starts it: ``productgraph up``.

Covers the foundation's acceptance: stack.json and the demo data, 10,000 events through the gateway
counted exactly in ClickHouse and through GraphQL, a ``kill -9`` of the warehouse processor mid-load
that still ends exact, a clean Ctrl-C with no process left, and a restart that finds the earlier data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from productgraph.connections import clickhouse_client
from productgraph.localstack.process import free_port

pytestmark = pytest.mark.e2e


class RunningStack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG_")}
        env.update({"PG_GATEWAY_PORT": str(free_port()), "PG_QUERY_API_PORT": str(free_port())})
        self.log = open(data_dir.parent / f"up-{time.time_ns()}.log", "wb")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "productgraph.cli", "up", "--data-dir", str(data_dir), "--demo-events", "300"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.info = self._wait_stack_json()

    def _wait_stack_json(self, timeout: float = 180) -> dict[str, Any]:
        path = self.data_dir / "stack.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"productgraph up exited: {self.output()}"
            if path.exists():
                try:
                    return dict(json.loads(path.read_text()))
                except json.JSONDecodeError:
                    pass
            time.sleep(0.2)
        raise TimeoutError(f"no stack.json after {timeout}s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def pids(self) -> list[int]:
        info = dict(json.loads((self.data_dir / "stack.json").read_text()))
        return [*info["processes"].values(), *info["servers"].values()]

    def graphql(self, query: str) -> dict[str, Any]:
        resp = httpx.post(
            self.info["graphql_url"],
            json={"query": query},
            headers={"Authorization": f"Bearer {self.info['admin_token']}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        body = dict(resp.json())
        assert "errors" not in body, body
        return dict(body["data"])

    def total(self) -> int:
        return int(self.graphql('{ events(projectId: "demo") { total } }')["events"]["total"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise
        self.log.close()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_members(pgids: set[int]) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) in pgids:
            found.append(int(stat.parent.name))
    return found


def _events(n: int, prefix: str) -> list[dict[str, Any]]:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    return [
        {
            "event_id": f"{prefix}-{i}",
            "project_id": "demo",
            "session.id": f"{prefix}-s{i // 25}",
            "event.type": "page.view" if i % 3 == 0 else "ui.click",
            "page.path": f"/p{i % 7}",
            "event.timestamp": (t0 + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
        }
        for i in range(n)
    ]


def _post_all(url: str, key: str, events: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=url, headers={"X-PG-API-Key": key}, timeout=30) as client:
        for i in range(0, len(events), 100):
            resp = client.post("/v1/events", json={"events": events[i : i + 100]})
            assert resp.status_code == 202 and resp.json()["accepted"] == 100, resp.text


def _wait_total(stack: RunningStack, expected: int, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    total = -1
    while time.monotonic() - started < timeout:
        total = stack.total()
        if total >= expected:
            break
        time.sleep(0.25)
    return total, time.monotonic() - started


def test_stack_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    stack = RunningStack(data_dir)
    try:
        up_seconds = time.monotonic() - stack.started
        for key in ("gateway_url", "graphql_url", "api_key", "project_id", "org_id", "admin_token"):
            assert stack.info[key], key
        assert up_seconds < 180

        # the demo events arrive and are visible through GraphQL
        total, _ = _wait_total(stack, 300, 30)
        assert total == 300

        # 10,000 events in batches of 100: exact within 10 s of the last answer
        _post_all(stack.info["gateway_url"], stack.info["api_key"], _events(10_000, f"a{uuid.uuid4().hex[:6]}"))
        total, waited = _wait_total(stack, 10_300, 10)
        assert total == 10_300, f"after {waited:.1f}s"
        ch = clickhouse_client(stack.info["env"]["PG_CLICKHOUSE_URL"])
        rows = ch.query(
            "SELECT count() FROM events FINAL WHERE project_id = {p:UUID}", parameters={"p": stack.info["project_id"]}
        ).result_rows[0][0]
        ch.close()
        assert rows == 10_300

        # kill -9 the warehouse processor during a second load; the supervisor restarts it
        victim = stack.info["processes"]["processor-warehouse-1"]
        loader = threading.Thread(
            target=_post_all, args=(stack.info["gateway_url"], stack.info["api_key"], _events(10_000, "b"))
        )
        loader.start()
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        loader.join(120)
        total, waited = _wait_total(stack, 20_300, 60)
        time.sleep(2)
        assert stack.total() == 20_300 == total
        assert json.loads((data_dir / "stack.json").read_text())["processes"]["processor-warehouse-1"] != victim

        session = stack.graphql(
            '{ session(projectId: "demo", sessionId: "b-s3") { eventCount durationMs live { eventCount } } }'
        )
        assert session["session"]["eventCount"] == 25 and session["session"]["durationMs"] == 24
        assert session["session"]["live"]["eventCount"] == 25
        pids = stack.pids()
    finally:
        stack.stop()
    assert stack.proc.returncode == 0, stack.output()
    assert [p for p in pids if _alive(p)] == []
    assert _group_members(set(pids)) == []

    # restart: Postgres (keys), ClickHouse (events) and Redis (live sessions) kept their data
    again = RunningStack(data_dir)
    try:
        assert again.info["api_key"] == stack.info["api_key"]
        total, _ = _wait_total(again, 20_600, 30)
        assert total == 20_600  # earlier 20,300 plus this start's 300 demo events (new ids)
    finally:
        again.stop()
    assert again.proc.returncode == 0
