"""The top-paths answer, built the same way from the reference's and ClickHouse's counts (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from query_api.paths.spec import PathsSpec

__all__ = ["PathCount", "PathsResult", "build_result"]


@dataclass(frozen=True, slots=True)
class PathCount:
    nodes: tuple[str, ...]
    count: int
    rate: float  # count / anchored segments, 6 decimals


@dataclass(frozen=True, slots=True)
class PathsResult:
    direction: str
    total: int  # session segments with an anchor
    paths: tuple[PathCount, ...]  # most frequent first, ties by nodes


def build_result(spec: PathsSpec, counts: Mapping[tuple[str, ...], int], total: int | None = None) -> PathsResult:
    """``counts`` per path (all of them, or already the top ones with ``total`` given)."""
    total = sum(counts.values()) if total is None else total
    top = sorted(counts.items(), key=lambda t: (-t[1], t[0]))[: spec.limit]
    return PathsResult(spec.direction, total, tuple(PathCount(p, n, round(n / total, 6)) for p, n in top))
