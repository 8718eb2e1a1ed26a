"""Step-by-step per-entity funnel algorithms, in Python: the executable design of the SQL in
:mod:`query_api.funnels.sql`, written the same way (whole-array passes, one per step, no per-event state
machine) so that tests can check the design against the exhaustive reference cheaply.

Ordered (rules 7, 8).  ``V[k][x]`` is defined when some valid path ends at event x as step k; its value is
the path's latest possible start, and ``pred[k][x]`` the previous step's event on the chosen path.
Fact (induction over k): defined values of ``V[k]`` never decrease along the events, and the events that
may precede x as step k-1 form a range [lo(x), x) whose lower end never decreases with x (it is cut by
the last exclusion between k-1 and k, and by step k's window).  So the best predecessor is simply the
*last* defined candidate before x: if it is outside the range, none is inside; if it fails the windows,
every earlier one does too; otherwise it has the latest start and is the latest such event, which is the
rule-8 choice.  A forward fill ("last defined so far") and one pass per step compute everything.
The chosen path ends at the first event of the furthest level and follows ``pred`` back.

Strict: the only possible predecessor of x is the previous event of its segment (when that event is the
immediately preceding one, ``seg_pos - 1``), so ``V[k][x]`` comes from ``V[k-1][prev(x)]`` directly; an
exclusion event of another session in between (users) is found with prefix counts.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from query_api.funnels.events import FunnelEvent
from query_api.funnels.spec import FunnelSpec

__all__ = ["any_order_path", "ordered_path", "strict_path"]

Path = tuple[int, ...]
Cand = tuple[int, int] | None  # (start, position), 1-based positions


def _fill(values: list[Cand]) -> list[Cand]:
    """Forward fill: position i holds the last defined value at positions <= i."""
    out: list[Cand] = []
    last: Cand = None
    for v in values:
        last = v if v is not None else last
        out.append(last)
    return out


def _last_marked(marks: list[bool]) -> list[int]:
    """Position i holds the last marked position <= i (0 when none)."""
    out, last = [], 0
    for i, m in enumerate(marks):
        last = i if m and i > 0 else last
        out.append(last)
    return out


def _starts(evs: Sequence[FunnelEvent]) -> list[Cand]:
    """Step 1's candidates (1-based): every event that may start a path starts one at itself."""
    first: list[Cand] = [None]
    first.extend((x, x) if 1 in e.steps and e.can_start else None for x, e in enumerate(evs, start=1))
    return first


def _choose(levels: list[list[Cand]], preds: list[list[int]]) -> Path:
    """The first event of the furthest level, then the predecessors back to step 1.  Arrays are 1-based
    (index 0 unused); ``levels[j]``/``preds[j]`` belong to step j + 1; the path is 0-based."""
    for k in range(len(levels) - 1, -1, -1):
        end = next((x for x in range(1, len(levels[k])) if levels[k][x] is not None), None)
        if end is None:
            continue
        path = [end]
        for j in range(k, 0, -1):
            path.append(preds[j][path[-1]])
        return tuple(p - 1 for p in reversed(path))
    return ()


def ordered_path(evs: Sequence[FunnelEvent], spec: FunnelSpec) -> Path:
    n = len(evs)
    t = [0, *(e.ts for e in evs)]  # 1-based, like ClickHouse arrays
    ev = [None, *evs]
    levels = [_starts(evs)]
    preds: list[list[int]] = [[0] * (n + 1)]
    for k in range(2, len(spec.steps) + 1):
        filled = _fill(levels[-1])
        excl = _last_marked([False, *((k - 1) in e.exclusions for e in evs)])
        window = spec.steps[k - 1].window_ms
        level: list[Cand] = [None] * (n + 1)
        pred = [0] * (n + 1)
        for x in range(2, n + 1):
            c = filled[x - 1]
            e = ev[x]
            assert e is not None
            if (
                k in e.steps
                and c is not None
                and c[1] >= excl[x - 1]
                and t[x] - t[c[0]] <= spec.window_ms
                and (window is None or t[x] - t[c[1]] <= window)
            ):
                level[x], pred[x] = (c[0], x), c[1]
        levels.append(level)
        preds.append(pred)
    return _choose(levels, preds)


def strict_path(evs: Sequence[FunnelEvent], spec: FunnelSpec) -> Path:
    n = len(evs)
    t = [0, *(e.ts for e in evs)]
    # prev(x): the previous event of x's segment, when it is the immediately preceding one
    order = sorted(range(1, n + 1), key=lambda i: (evs[i - 1].session_id, evs[i - 1].segment, evs[i - 1].seg_pos))
    prev = [0] * (n + 1)
    for a, b in itertools.pairwise(order):
        ea, eb = evs[a - 1], evs[b - 1]
        if (ea.session_id, ea.segment, ea.seg_pos + 1) == (eb.session_id, eb.segment, eb.seg_pos):
            prev[b] = a
    levels = [_starts(evs)]
    preds: list[list[int]] = [[0] * (n + 1)]
    for k in range(2, len(spec.steps) + 1):
        counts = [0]
        for e in evs:  # exclusions between k-1 and k seen so far (prefix counts)
            counts.append(counts[-1] + ((k - 1) in e.exclusions))
        window = spec.steps[k - 1].window_ms
        level: list[Cand] = [None] * (n + 1)
        pred = [0] * (n + 1)
        for x in range(1, n + 1):
            p = prev[x]
            c = levels[-1][p] if p else None
            if (
                k in evs[x - 1].steps
                and c is not None
                and counts[x - 1] - counts[p] == 0
                and t[x] - t[c[0]] <= spec.window_ms
                and (window is None or t[x] - t[p] <= window)
            ):
                level[x], pred[x] = (c[0], x), p
        levels.append(level)
        preds.append(pred)
    return _choose(levels, preds)


def any_order_path(evs: Sequence[FunnelEvent], spec: FunnelSpec) -> Path | None:
    """Rule 10 in linear time when every event matches at most one step (else None: use the reference's
    matching).  Then a window's level is its number of distinct steps, found for every start with one
    sliding window.  For starts s < s' the point where s reaches k steps is never later than where s'
    does, so the chosen window (most steps, reached first, latest start) is the latest start reaching the
    best level at the point where the first such start reaches it."""
    if any(len(e.steps) > 1 for e in evs):
        return None
    idx = [i for i, e in enumerate(evs) if e.steps]
    counts: dict[int, int] = {}
    level = [0] * len(idx)
    end = 0
    for a, i in enumerate(idx):
        while end < len(idx) and evs[idx[end]].ts - evs[i].ts <= spec.window_ms:
            (step,) = evs[idx[end]].steps
            counts[step] = counts.get(step, 0) + 1
            end += 1
        level[a] = len(counts) if evs[i].can_start else 0
        (step,) = evs[i].steps
        counts[step] -= 1
        if not counts[step]:
            del counts[step]
    best = max(level, default=0)
    if not best:
        return ()

    def reach(a: int, limit: int) -> list[int]:
        """Positions where the window from idx[a] reaches 1, 2, ... distinct steps, up to ``limit``."""
        seen: set[int] = set()
        out: list[int] = []
        for b in range(a, len(idx)):
            if evs[idx[b]].ts - evs[idx[a]].ts > spec.window_ms or len(out) == limit:
                break
            (step,) = evs[idx[b]].steps
            if step not in seen:
                seen.add(step)
                out.append(idx[b])
        return out

    first = level.index(best)
    chosen = reach(first, best)
    for a in range(first + 1, len(idx)):
        if idx[a] > chosen[-1]:
            break
        if level[a] == best:
            later = reach(a, best)
            if len(later) == best and later[-1] == chosen[-1]:
                chosen = later
    return tuple(chosen)
