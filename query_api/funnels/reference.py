"""The funnel rules, literally, in Python: the yardstick the ClickHouse evaluator is tested against.

Exhaustive, clear, not fast: ordered and strict funnels enumerate every valid path of an entity (rule 7)
and pick the chosen one (rule 8); totals replay the attempt rule (rule 9) event by event; any-order
funnels try every window start and grow a maximum step matching event by event (rule 10).  Use it on
small data (tests, one entity); :mod:`query_api.funnels.clickhouse` answers real questions.

A path is a tuple of indexes into the entity's events (total order), one per reached step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from query_api.funnels.events import FunnelEvent, group_entities, prepare_events
from query_api.funnels.result import NONE_VALUE, FunnelResult, PathOutcome, summarize
from query_api.funnels.spec import FunnelSpec
from schemas.records import EventRecord

__all__ = ["any_order_path", "best_path", "evaluate", "outcome", "outcomes", "totals_paths", "valid_paths"]

Path = tuple[int, ...]


def evaluate(records: Iterable[EventRecord], spec: FunnelSpec) -> FunnelResult:
    """The funnel over one project's stored events (as the gateway accepted them, duplicates allowed)."""
    return summarize(outcomes(prepare_events(records, spec), spec), spec)


def outcomes(events: Iterable[FunnelEvent], spec: FunnelSpec) -> list[PathOutcome]:
    out: list[PathOutcome] = []
    for entity, evs in sorted(group_entities(events, spec).items()):
        if spec.count_by == "totals":
            paths = totals_paths(evs, spec)
        elif spec.mode == "any_order":
            paths = [any_order_path(evs, spec)]
        else:
            paths = [best_path(evs, spec)]
        out.extend(outcome(entity, evs, p, spec) for p in paths if p)
    return out


def outcome(entity: str, evs: Sequence[FunnelEvent], path: Path, spec: FunnelSpec) -> PathOutcome:
    b = spec.breakdown
    if b is None:
        value = NONE_VALUE
    elif b.attribution == "first_step":
        value = evs[path[0]].breakdown
    elif b.attribution == "last_step":
        value = evs[path[-1]].breakdown
    else:
        assert b.step is not None
        value = evs[path[b.step - 1]].breakdown if len(path) >= b.step else NONE_VALUE
    return PathOutcome(entity, tuple(evs[i].ts for i in path), tuple(evs[i].session_id for i in path), value)


def _next_in_segment(a: FunnelEvent, b: FunnelEvent) -> bool:
    return a.session_id == b.session_id and a.segment == b.segment and b.seg_pos == a.seg_pos + 1


def _link_ok(evs: Sequence[FunnelEvent], a: int, b: int, k: int, spec: FunnelSpec) -> bool:
    """May ``evs[b]`` be step ``k`` right after ``evs[a]`` as step ``k - 1``?  (Step match and the global
    window are checked by the caller.)"""
    window = spec.steps[k - 1].window_ms
    if window is not None and evs[b].ts - evs[a].ts > window:
        return False
    if any(k - 1 in evs[m].exclusions for m in range(a + 1, b)):  # strictly between the two steps
        return False
    return spec.mode != "strict" or _next_in_segment(evs[a], evs[b])


def valid_paths(evs: Sequence[FunnelEvent], spec: FunnelSpec) -> Iterator[Path]:
    """Every valid path (rule 7): any step-1 event may start one (optimized re-entry)."""
    n_steps = len(spec.steps)

    def extend(path: Path) -> Iterator[Path]:
        yield path
        k = len(path) + 1
        if k > n_steps:
            return
        for b in range(path[-1] + 1, len(evs)):
            if (
                k in evs[b].steps
                and evs[b].ts - evs[path[0]].ts <= spec.window_ms
                and _link_ok(evs, path[-1], b, k, spec)
            ):
                yield from extend((*path, b))

    for a, e in enumerate(evs):
        if 1 in e.steps and e.can_start:
            yield from extend((a,))


def best_path(evs: Sequence[FunnelEvent], spec: FunnelSpec) -> Path:
    """Rule 8: the furthest step, reached first, then the latest start; the steps in between are then the
    latest possible, last step first (the path the linear evaluators find)."""

    def rank(p: Path) -> tuple[int, int, int, Path]:
        return (len(p), -p[-1], p[0], tuple(reversed(p[1:-1])))

    return max(valid_paths(evs, spec), key=rank, default=())


def totals_paths(evs: Sequence[FunnelEvent], spec: FunnelSpec) -> list[Path]:
    """Rule 9, ordered or strict: one person's attempts, which never overlap.

    An attempt at step 1 never ends: a newer step-1 event replaces its start, and an exclusion (or, in
    strict mode, a broken chain) only stops it from advancing until then.  An attempt at step j >= 2 ends
    when it converts, or at the first event that shows it cannot advance any more: past the global window
    or step j+1's window, an exclusion between steps j and j+1, or (strict) any other event of its
    session.  That event may then start the next attempt.
    """
    n_steps, strict = len(spec.steps), spec.mode == "strict"
    done: list[Path] = []
    path: Path = ()
    blocked = False
    for i, e in enumerate(evs):
        if path:
            j = len(path)
            first, last = evs[path[0]], evs[path[-1]]
            step_window = spec.steps[j].window_ms
            in_time = e.ts - first.ts <= spec.window_ms and (step_window is None or e.ts - last.ts <= step_window)
            if j + 1 in e.steps and in_time and not blocked and (not strict or _next_in_segment(last, e)):
                path = (*path, i)
                if len(path) == n_steps:
                    done.append(path)
                    path = ()
                continue
            if j == 1:
                if 1 in e.steps and e.can_start:
                    path, blocked = (i,), False
                elif 1 in e.exclusions:
                    blocked = True
                continue
            if in_time and j not in e.exclusions and not (strict and e.session_id == last.session_id):
                continue
            done.append(path)
            path = ()
        if 1 in e.steps and e.can_start:
            path, blocked = (i,), False
    if path:
        done.append(path)
    return done


def _augment(j: int, evs: Sequence[FunnelEvent], match: dict[int, int], seen: set[int]) -> bool:
    """Kuhn's augmenting path: can event ``j`` be added to the step matching (one event, one step)?
    (Only the matching's size is used, which does not depend on the order steps are tried in.)"""
    for step in evs[j].steps:
        if step in seen:
            continue
        seen.add(step)
        if step not in match or _augment(match[step], evs, match, seen):
            match[step] = j
            return True
    return False


def any_order_path(evs: Sequence[FunnelEvent], spec: FunnelSpec) -> Path:
    """Rule 10.  For each window start s (an event matching some step), p_k is the first event at which
    the events from s on can be matched to k distinct steps, inside the window; the chosen window reaches
    the most steps, reaches them first, then starts latest (rule 8).  The path is (p_1 = s, ..., p_L)."""
    n_steps = len(spec.steps)
    best: Path = ()
    best_rank: tuple[int, int, int] | None = None
    for s, start in enumerate(evs):
        if best_rank is not None and best_rank[0] == n_steps and s > best[-1]:
            # For starts s < s', the point where s reaches L steps is never later than where s' does
            # (s's events include s''s, up to s's window end, which s' reaching later lies beyond): once
            # every step is reached at p, a start after p cannot reach them at or before p.
            break
        if not start.steps or not start.can_start:
            continue
        match: dict[int, int] = {}
        reach: list[int] = []
        for j in range(s, len(evs)):
            if evs[j].ts - start.ts > spec.window_ms or len(reach) == n_steps:
                break
            if evs[j].steps and _augment(j, evs, match, set()):
                reach.append(j)
        rank = (len(reach), -reach[-1], s)
        if best_rank is None or rank > best_rank:
            best, best_rank = tuple(reach), rank
    return best
