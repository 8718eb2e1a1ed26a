"""Top paths reference on hand-computed data (pure): first anchor per segment, AFTER/BEFORE, depth,
segment split by the timeout, repeated pages kept, the anchor must lie in the range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from query_api.errors import InvalidInput
from query_api.paths import evaluate_reference, parse_paths_spec
from schemas.records import EventRecord

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
T = datetime(2026, 3, 11, 8, tzinfo=UTC)
_n = 0


def session(sid: str, start: datetime, steps: list[str], gap_after: int | None = None) -> list[EventRecord]:
    global _n
    out, t = [], start
    for i, s in enumerate(steps):
        _n += 1
        ts = int(t.timestamp() * 1000)
        if s.startswith("/"):
            out.append(EventRecord("o", "p", f"e{_n}", sid, "page.view", ts, ts, fields={"page.path": s}))
        else:
            out.append(EventRecord("o", "p", f"e{_n}", sid, "ui.click", ts, ts, fields={"event.name": s}))
        t += timedelta(minutes=31 if i == gap_after else 1)
    return out


RECORDS = [
    *session("s1", T, ["/home", "go", "/a", "/a", "go", "/b", "/c"]),
    *session("s2", T + timedelta(hours=1), ["/blog", "/home", "go", "/a"]),
    *session("s3", T + timedelta(hours=2), ["go", "/a"], gap_after=0),
    *session("s4", T - timedelta(days=3), ["/home", "go", "/a"]),  # before the range
]


def paths(direction: str, depth: int, node: str = "PAGE") -> list[tuple[tuple[str, ...], int]]:
    spec = parse_paths_spec(step={"event_name": "go"}, direction=direction, depth=depth, node=node,
                            date_from=T - timedelta(hours=1), date_to=NOW, now=NOW)  # fmt: skip
    r = evaluate_reference(RECORDS, spec)
    assert r.total == 3
    return [(p.nodes, p.count) for p in r.paths]


def test_after_before_depth_and_nodes() -> None:
    assert paths("AFTER", 3) == [((), 1), (("/a",), 1), (("/a", "/a", "/b"), 1)]
    assert paths("AFTER", 1) == [(("/a",), 2), ((), 1)]
    assert paths("BEFORE", 2) == [((), 1), (("/blog", "/home"), 1), (("/home",), 1)]
    assert paths("AFTER", 2, "EVENT") == [((), 2), (("go",), 1)]


def test_guard_rails() -> None:
    with pytest.raises(InvalidInput, match=r"depth: must be an integer in 1\.\.5"):
        parse_paths_spec(step={"event_name": "go"}, depth=0, now=NOW)
    with pytest.raises(InvalidInput, match="direction: must be AFTER or BEFORE"):
        parse_paths_spec(step={"event_name": "go"}, direction="UP", now=NOW)
    with pytest.raises(InvalidInput, match=r"step\.matcher: must be an object"):
        parse_paths_spec(step=None, now=NOW)
