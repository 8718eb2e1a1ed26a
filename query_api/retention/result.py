"""The retention answer (the classic triangle), built the same way from the reference's and ClickHouse's
counts (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from query_api.retention.spec import RetentionSpec, period_start

__all__ = ["RetentionCell", "RetentionCohort", "RetentionResult", "build_result"]


@dataclass(frozen=True, slots=True)
class RetentionCell:
    period: int
    count: int | None  # None: the period has not begun yet
    rate: float | None  # count / cohort size, 6 decimals; 0 for an empty cohort


@dataclass(frozen=True, slots=True)
class RetentionCohort:
    start: datetime  # UTC start of the cohort's day / week / month
    size: int
    cells: tuple[RetentionCell, ...]


@dataclass(frozen=True, slots=True)
class RetentionResult:
    period: str
    periods: int
    cohorts: tuple[RetentionCohort, ...]


def build_result(
    spec: RetentionSpec, sizes: Mapping[int, int], counts: Mapping[tuple[int, int], int]
) -> RetentionResult:
    """``sizes[cohort]`` and ``counts[(cohort, n)]`` (period indexes; missing = 0) → every cohort row of the range."""
    rows = []
    for c in range(spec.first_cohort, spec.last_cohort + 1):
        size = sizes.get(c, 0)
        cells = []
        for n in range(spec.periods + 1):
            if c + n > spec.today:
                cells.append(RetentionCell(n, None, None))
                continue
            k = counts.get((c, n), 0)
            cells.append(RetentionCell(n, k, round(k / size, 6) if size else 0.0))
        rows.append(RetentionCohort(period_start(spec.period, c), size, tuple(cells)))
    return RetentionResult(spec.period, spec.periods, tuple(rows))
