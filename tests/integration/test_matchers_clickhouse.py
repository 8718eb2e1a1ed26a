"""The matcher language agrees with itself: Python ``matches`` == ClickHouse ``to_clickhouse`` on the same
stored events (exact / prefix / glob paths, metadata of every JSON type, the other fields)."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from productgraph.connections import clickhouse_client
from schemas.matchers import Matcher, matches, parse_matcher, to_clickhouse
from schemas.records import EventRecord
from stream_processors.sinks import ClickHouseEventSink
from tests.conftest import Servers

pytestmark = pytest.mark.integration

T0 = int((datetime.now(UTC) - timedelta(days=7)).timestamp() * 1000)  # inside the events table's one-year TTL
EDGE_GLOBS = ["/a/*", "*", "?", "/a?c", "[^a]", "[!]]", "[!a]*", "[]a]", "[[:alpha:]]", "[a-c-e]", "a[b-]c", "[z-a]",
              "[!z-a]", "[\\]", "[&&]*", "*.txt", "[", "a[", "[!]", "[]", "*[*", "/é*", "[é-ü]", "**/x", "[a-]",
              "[-a]", "[!-a]", "\\*", "a.b", "(a|b)", "$x^", "{a,b}", "a+", "[a\\-z]"]  # fmt: skip
EDGE_PATHS = ["/a/b", "/a/", "/abc", "/a\nb", "^", "b", "a", "]", "x", ":]", "[", "a-c", "-", "e", "d", "z", "q", "\\",
              "&", "&&", "a.txt", "b\n.txt", "/é", "/éa", "ö", "x/x", "**/x", "*", "a.b", "axb", "(a|b)", "$x^",
              "{a,b}", "a+", "aa+", "", "[a", "[!]", "a[", "-a"]  # fmt: skip
ALPHABET = "ab/-^[]!\\.*?é\n"


def _record(project: str, org: str, i: int, fields: dict[str, Any], metadata: dict[str, Any]) -> EventRecord:
    return EventRecord(org, project, f"m{i:05d}", "s1", "page.view", T0 + i, T0 + i, fields=fields, metadata=metadata)


async def _compare(servers: Servers, records: list[EventRecord], matchers: list[Matcher]) -> None:
    client = clickhouse_client(servers.clickhouse_url)
    sink = ClickHouseEventSink(client)
    for r in records:
        sink.add(r)
    await sink.flush()
    org, project = records[0].org_id, records[0].project_id
    by_id = {r.event_id: r for r in records}
    for start in range(0, len(matchers), 40):
        chunk = matchers[start : start + 40]
        conds, params = [], {"org": org, "project": project}
        for i, m in enumerate(chunk):
            cond, p = to_clickhouse(m, f"m{i}")
            conds.append(f"({cond})")
            params.update(p)
        sql = (
            f"SELECT event_id, [{', '.join(conds)}] FROM events FINAL "
            "WHERE org_id = {org:UUID} AND project_id = {project:UUID} ORDER BY event_id"
        )
        rows = (await asyncio.to_thread(client.query, sql, parameters=params)).result_rows
        assert len(rows) == len(records)
        for event_id, flags in rows:
            for m, flag in zip(chunk, flags, strict=True):
                assert bool(flag) == matches(m, by_id[event_id]), (m, by_id[event_id].fields, by_id[event_id].metadata)


async def test_page_path_modes_agree(servers: Servers) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    rng = random.Random(6)
    globs = EDGE_GLOBS + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    paths = EDGE_PATHS + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6))) for _ in range(200)]
    records = [_record(project, org, i, {"page.path": p} if p else {}, {}) for i, p in enumerate(paths)]
    matchers = [parse_matcher({"page_path": g, "page_path_mode": "glob"}) for g in globs]
    matchers += [parse_matcher({"page_path": p, "page_path_mode": mode}) for p in EDGE_PATHS if p
                 for mode in ("exact", "prefix")]  # fmt: skip
    await _compare(servers, records, matchers)


async def test_metadata_and_fields_agree(servers: Servers) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    values: list[Any] = ["pro", "", True, False, None, 1, 1.5, 2.0, [1, "a"], {"k": "v"}, "true", "1"]
    records = [_record(project, org, i, {}, {"plan": v}) for i, v in enumerate(values)]
    records.append(_record(project, org, 99, {}, {}))  # no metadata at all
    fields = {"event.name": "buy", "ui.component.name": "Cart", "ui.action": "click", "gen_ai.journey.id": "j1",
              "gen_ai.journey.step.id": "s2"}  # fmt: skip
    records.append(_record(project, org, 98, fields, {"plan": "pro", "team": "x"}))
    texts = ["pro", "", "true", "True", "false", "null", "None", "1", "1.5", "2.0", "2", '[1,"a"]', '{"k":"v"}']
    matchers = [parse_matcher({"metadata": {"plan": t}}) for t in texts]
    matchers += [
        parse_matcher({"metadata": {"plan": "pro", "team": "x"}}),
        parse_matcher({"event_name": "buy", "component": "Cart", "action": "click"}),
        parse_matcher({"journey_id": "j1", "step_id": "s2"}),
        parse_matcher({"event_type": "page.view", "event_name": "buy"}),
        parse_matcher({"event_type": "ui.click"}),
    ]
    await _compare(servers, records, matchers)
