"""The trends answer, built the same way from the reference's and ClickHouse's counts (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from query_api.trends.spec import ALL, OTHER, TrendsSpec

__all__ = ["TrendSeries", "TrendsResult", "build_result"]


@dataclass(frozen=True, slots=True)
class TrendSeries:
    value: str
    total: int
    counts: tuple[int, ...]  # one per bucket


@dataclass(frozen=True, slots=True)
class TrendsResult:
    interval: str
    buckets: tuple[datetime, ...]
    total: int
    series: tuple[TrendSeries, ...]  # most events first (ties by value), "(other)" last


def build_result(spec: TrendsSpec, counts: Mapping[tuple[str, int], int]) -> TrendsResult:
    """``counts[(group, bucket start ms)]``; groups are already the top values, ``(other)`` or ``(all)``."""
    buckets = spec.buckets()
    groups = sorted({g for g, _ in counts} or ({ALL} if spec.breakdown is None else set()))
    series = [TrendSeries(g, 0, tuple(counts.get((g, b), 0) for b in buckets)) for g in groups]
    series = [TrendSeries(s.value, sum(s.counts), s.counts) for s in series]
    series.sort(key=lambda s: (s.value == OTHER, -s.total, s.value))
    return TrendsResult(
        spec.interval,
        tuple(datetime.fromtimestamp(b / 1000, tz=UTC) for b in buckets),
        sum(s.total for s in series),
        tuple(series),
    )
