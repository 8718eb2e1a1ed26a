"""``kill -9`` of a sessions processor process, several times while events stream in, each time restarted:
the sessions in ClickHouse and the live views in Redis end exactly as the reference computes them.

The processor runs as users run it, ``python -m productgraph.cli processor sessions``, configured by
environment (servers from the ``servers`` fixture, its own consumer group, small batches and ages so that
kills land between and inside flushes).  It reads the shared events topic; only this test's project is
checked."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from productgraph.localstack.process import free_port
from schemas.topics import EVENTS
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    expected_rows,
    live_views,
    produce,
    session_rows,
    settings_for,
    synthetic_stream,
    wait_for,
)

pytestmark = pytest.mark.integration


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "productgraph.cli", "processor", "sessions"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


async def test_sigkilled_sessions_processor_restarted_ends_exact(servers: Servers, tmp_path: Path) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    settings = settings_for(servers)  # only for its group prefix and the session policy
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG_")}
    env.update(servers.env())
    env.update(
        {
            "PG_CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
            "PG_BATCH_MAX_AGE_S": "0.2",
            "PG_BATCH_MAX_RECORDS": "300",
            "PG_RETRY_MAX_BACKOFF_S": "1",
            "PG_LOG_LEVEL": "WARNING",
            "PG_METRICS_PORT": str(metrics_port),
        }
    )
    stream = synthetic_stream(org, project, sessions=60, events=4000, seed=9)
    worker = Worker(env, tmp_path / "processor.log")
    rng = random.Random(5)
    kills = 0
    try:
        worker.start()
        for i in range(0, len(stream), 400):
            await produce(servers.kafka_bootstrap, EVENTS.name, stream[i : i + 400])
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            if i // 400 in (1, 3, 5, 7):
                assert worker.kill() == -signal.SIGKILL
                kills += 1
                await asyncio.sleep(rng.uniform(0, 0.5))
                worker.start()
        assert kills == 4
        expected = expected_rows(stream, settings)

        async def exact() -> bool:
            return session_rows(servers.clickhouse_url, project) == expected

        await wait_for(exact, limit_s=180, what=f"exact sessions (log: {worker.log})")
        newest: dict[str, tuple[int, int]] = {}
        for (session, segment), row in expected.items():
            if segment >= newest.get(session, (0, 0))[0]:
                newest[session] = (segment, row[0])
        views = await live_views(servers.redis_url, project, newest)
        assert {s: (int(v["segment"]), int(v["event_count"])) for s, v in views.items()} == newest

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", timeout=10) as http:
            ready = await http.get("/ready")
            assert ready.status_code == 200, ready.text
            assert 'productgraph_processor_records_total{kind="sessions"}' in (await http.get("/metrics")).text
        assert worker.kill(signal.SIGTERM) == 0, "SIGTERM: flush, commit, exit 0"
    finally:
        worker.ensure_stopped()
