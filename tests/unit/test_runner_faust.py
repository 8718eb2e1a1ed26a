"""What faust-streaming acknowledges, and when: the facts behind the "why aiokafka" note in
stream_processors/runner.py.  faust's agent test context feeds events without a broker; an acked event is
one whose offset faust's commit timer will commit.

* ``take_events``: a batch is acked when the agent asks for the next one, so a flush inside the body
  happens before the ack (the old claim "faust acks before a batched flush" is wrong for batches);
* but when the body raises (a sink is down), the batch is acked anyway: an unstored batch would be
  committed, so a faust sink must never let an error out;
* ``noack_take`` leaves acking to the agent (manual acks exist).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust


def _app(tmp_path: Path) -> Any:
    return faust.App(f"t{id(tmp_path)}", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path))


async def _feed(agent: Any, n: int) -> list[Any]:
    events = []
    async with agent.test_context() as ctx:
        for i in range(n):
            events.append(await ctx.put(f"v{i}"))
        await asyncio.sleep(0.5)
    return events


async def test_take_events_acks_a_batch_after_the_body(tmp_path: Path) -> None:
    app = _app(tmp_path)
    seen: list[list[bool]] = []

    @app.agent(app.topic("x", value_type=str))  # type: ignore[untyped-decorator]
    async def sink(stream: Any) -> None:
        async for batch in stream.take_events(3, within=0.1):
            await asyncio.sleep(0.05)  # the ClickHouse flush
            seen.append([e.message.acked for e in batch])

    events = await _feed(sink, 3)
    assert seen == [[False, False, False]], "not acked while the body (the flush) runs"
    assert [e.message.acked for e in events] == [True, True, True], "acked when the next batch is asked for"


async def test_take_events_acks_a_batch_whose_body_raised(tmp_path: Path) -> None:
    app = _app(tmp_path)

    @app.agent(app.topic("x", value_type=str))  # type: ignore[untyped-decorator]
    async def sink(stream: Any) -> None:
        async for _batch in stream.take_events(3, within=0.1):
            raise ConnectionError("clickhouse down: nothing stored")

    events = await _feed(sink, 3)
    assert [e.message.acked for e in events] == [True, True, True], "acked, though never stored"


async def test_noack_take_leaves_acks_to_the_agent(tmp_path: Path) -> None:
    app, n = _app(tmp_path), 3

    @app.agent(app.topic("x", value_type=str))  # type: ignore[untyped-decorator]
    async def sink(stream: Any) -> None:
        async for _batch in stream.noack_take(n, within=0.1):
            raise ConnectionError("clickhouse down")

    events = await _feed(sink, n)
    assert [e.message.acked for e in events] == [False] * n
