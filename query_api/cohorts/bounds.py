"""Guard rails shared by the cohort, retention, trends and paths questions (pure).

Times arrive as RFC 3339 strings (JSON: saved definitions, MCP) or timezone-aware datetimes (GraphQL's
``DateTime``); naive datetimes are read as UTC, like the rest of the query API.  Every range is bounded
(:data:`MAX_RANGE`, the events table keeps a year anyway) and every count/limit has an explicit interval,
so a question cannot turn into an unbounded scan.  Errors are :class:`~query_api.errors.InvalidInput`
(``<argument>: <reason>``), which the GraphQL layer shows as is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from query_api.errors import InvalidInput

__all__ = ["MAX_RANGE", "check_int", "check_range", "ms", "parse_time", "utc"]

MAX_RANGE = timedelta(days=400)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ms(value: datetime) -> int:
    """Milliseconds since the epoch (the unit of every bound time parameter)."""
    return int(utc(value).timestamp() * 1000)


def parse_time(name: str, raw: object) -> datetime | None:
    """``None`` stays ``None`` (the caller picks a default); else a UTC datetime or :class:`InvalidInput`."""
    if raw is None or isinstance(raw, datetime):
        return None if raw is None else utc(raw)
    if isinstance(raw, str):
        try:
            return utc(datetime.fromisoformat(raw))
        except ValueError:
            pass
    raise InvalidInput(f"{name}: must be an RFC 3339 timestamp")


def check_range(date_from: datetime, date_to: datetime, *, max_range: timedelta = MAX_RANGE) -> None:
    if date_from >= date_to:
        raise InvalidInput("dateTo: must be after dateFrom")
    if date_to - date_from > max_range:
        raise InvalidInput(f"dateTo: the range may span at most {max_range.days} days")


def check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{name}: must be an integer in {low}..{high}")
    return value
