"""What a funnel question is: steps, mode, windows, counting unit, exclusions, breakdown, range, cohort.

A :class:`FunnelSpec` is validated when it is built (``__post_init__``), so every evaluator can trust it;
:func:`parse_funnel_spec` builds one from JSON-shaped input (GraphQL/MCP arguments, saved definitions).
Errors are :class:`FunnelSpecError` with the message ``<field>: <reason>`` (steps are 1-based, as in the
saved-definition checks).  Semantics: ../shared/design/analytics-semantics.md, "Funnels" and rules 1-11.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from schemas.fields import FIELDS, Kind
from schemas.matchers import Matcher, MatcherError, parse_matcher

__all__ = [
    "DEFAULT_WINDOW_MS",
    "MAX_EXCLUSIONS",
    "MAX_RANGE",
    "MAX_STEPS",
    "MIN_STEPS",
    "Attribution",
    "Breakdown",
    "CohortFilter",
    "CohortSubquery",
    "CountBy",
    "Exclusion",
    "FunnelSpec",
    "FunnelSpecError",
    "FunnelStep",
    "Mode",
    "parse_funnel_spec",
]

Mode = Literal["ordered", "strict", "any_order"]
CountBy = Literal["users", "sessions", "totals"]
Attribution = Literal["first_step", "last_step", "step"]

MIN_STEPS = 2
MAX_STEPS = 50
MAX_EXCLUSIONS = 10  # step bits 0..49 and exclusion bits share no mask, but keep queries small
MAX_RANGE = timedelta(days=400)
DEFAULT_WINDOW_MS = 24 * 3600 * 1000
MAX_WINDOW_MS = 90 * 24 * 3600 * 1000
DEFAULT_SESSION_TIMEOUT_MS = 30 * 60 * 1000
MAX_COHORT_IDS = 10_000
MAX_ENTITIES_LIMIT = 1000
MAX_ENTITIES_OFFSET = 100_000
MAX_BREAKDOWN_GROUPS = 100

# Breakdown properties: ``event_type`` and the string/integer columns of the field table (floats have no
# stable text form shared by Python and ClickHouse), or ``metadata.<key>``.
BREAKDOWN_COLUMNS: dict[str, str] = {"event_type": "event_type"} | {
    f.column: f.name for f in FIELDS if f.kind in (Kind.STRING, Kind.INT)
}
_DOTTED_TO_COLUMN = {name: column for column, name in BREAKDOWN_COLUMNS.items()} | {"event.type": "event_type"}


class FunnelSpecError(ValueError):
    """A funnel question that cannot be answered; the message is ``<field>: <reason>``."""


@dataclass(frozen=True, slots=True)
class FunnelStep:
    matcher: Matcher
    window_ms: int | None = None  # max time from the previous step (inclusive); never on step 1
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Paths with a matching event strictly between step ``after_step`` and ``after_step + 1`` are invalid."""

    matcher: Matcher
    after_step: int  # 1-based


@dataclass(frozen=True, slots=True)
class Breakdown:
    property: str  # a column of BREAKDOWN_COLUMNS or "metadata.<key>"
    attribution: Attribution = "first_step"
    step: int | None = None  # 1-based, with attribution "step"

    @builtins.property  # the field above is called "property"
    def metadata_key(self) -> str | None:
        return self.property.removeprefix("metadata.") if self.property.startswith("metadata.") else None


@dataclass(frozen=True, slots=True)
class CohortSubquery:
    """A server-built ``SELECT`` of one String column of user ids, with bound parameters only.

    Built by the cohorts code, never from caller text; its parameter names must start with ``cohort_``.
    The Python reference cannot run it: resolve it to ``CohortFilter.user_ids`` there.
    """

    sql: str
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class CohortFilter:
    """Keep only events whose person (rule 4) is one of these user ids."""

    user_ids: frozenset[str] = frozenset()
    subquery: CohortSubquery | None = None


@dataclass(frozen=True, slots=True)
class FunnelSpec:
    steps: tuple[FunnelStep, ...]
    date_from: datetime  # step 1 happens in [date_from, date_to); later steps may follow within the window
    date_to: datetime
    mode: Mode = "ordered"
    window_ms: int = DEFAULT_WINDOW_MS  # last step - first step <= window (inclusive)
    count_by: CountBy = "users"
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: Breakdown | None = None
    cohort: CohortFilter | None = None
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS  # the project's setting (segments, rule 2)
    entities_limit: int = 100  # converted/dropped ids listed per step (a page)
    entities_offset: int = 0
    breakdown_limit: int = 25  # groups listed, largest step-1 count first

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def scan_from_ms(self) -> int:
        return _ms(self.date_from)

    @property
    def start_before_ms(self) -> int:
        """Step 1 (or an any-order window start) must be earlier than this."""
        return _ms(self.date_to)

    @property
    def scan_to_ms(self) -> int:
        """Events at or after this cannot be part of any path."""
        return _ms(self.date_to) + self.window_ms


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _fail(where: str, reason: str) -> FunnelSpecError:
    return FunnelSpecError(f"{where}: {reason}")


def _validate(s: FunnelSpec) -> None:
    n = len(s.steps)
    if not MIN_STEPS <= n <= MAX_STEPS:
        raise _fail("steps", f"needs {MIN_STEPS} to {MAX_STEPS} steps, got {n}")
    if s.mode not in ("ordered", "strict", "any_order"):
        raise _fail("mode", "must be ordered, strict or any_order")
    if s.count_by not in ("users", "sessions", "totals"):
        raise _fail("count_by", "must be users, sessions or totals")
    if s.count_by == "totals" and s.mode == "any_order":
        raise _fail("count_by", "totals needs mode ordered or strict")
    for i, step in enumerate(s.steps, start=1):
        if step.window_ms is None:
            continue
        if i == 1:
            raise _fail("steps[1].window_ms", "the first step has no window")
        if s.mode == "any_order":
            raise _fail(f"steps[{i}].window_ms", "per-step windows need mode ordered or strict")
        if not _is_int(step.window_ms) or not 0 < step.window_ms <= MAX_WINDOW_MS:
            raise _fail(f"steps[{i}].window_ms", f"must be an integer in 1..{MAX_WINDOW_MS}")
    if not _is_int(s.window_ms) or not 0 < s.window_ms <= MAX_WINDOW_MS:
        raise _fail("window_ms", f"must be an integer in 1..{MAX_WINDOW_MS}")
    for name in ("date_from", "date_to"):
        value = getattr(s, name)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise _fail(name, "must be a timezone-aware datetime")
    if s.date_from >= s.date_to:
        raise _fail("date_to", "must be after date_from")
    if s.date_to - s.date_from > MAX_RANGE:
        raise _fail("date_to", f"the range may span at most {MAX_RANGE.days} days")
    if len(s.exclusions) > MAX_EXCLUSIONS:
        raise _fail("exclusions", f"at most {MAX_EXCLUSIONS}")
    if s.exclusions and s.mode == "any_order":
        raise _fail("exclusions", "need mode ordered or strict")
    for i, ex in enumerate(s.exclusions, start=1):
        if not _is_int(ex.after_step) or not 1 <= ex.after_step < n:
            raise _fail(f"exclusions[{i}].after_step", f"must be a step in 1..{n - 1}")
    if s.breakdown is not None:
        _validate_breakdown(s.breakdown, n)
    if s.cohort is not None:
        _validate_cohort(s.cohort)
    if not _is_int(s.session_timeout_ms) or not 60_000 <= s.session_timeout_ms <= 24 * 3600 * 1000:
        raise _fail("session_timeout_ms", "must be between 1 minute and 24 hours")
    if not _is_int(s.entities_limit) or not 0 <= s.entities_limit <= MAX_ENTITIES_LIMIT:
        raise _fail("entities_limit", f"must be in 0..{MAX_ENTITIES_LIMIT}")
    if not _is_int(s.entities_offset) or not 0 <= s.entities_offset <= MAX_ENTITIES_OFFSET:
        raise _fail("entities_offset", f"must be in 0..{MAX_ENTITIES_OFFSET}")
    if not _is_int(s.breakdown_limit) or not 1 <= s.breakdown_limit <= MAX_BREAKDOWN_GROUPS:
        raise _fail("breakdown_limit", f"must be in 1..{MAX_BREAKDOWN_GROUPS}")


def _validate_breakdown(b: Breakdown, n: int) -> None:
    key = b.metadata_key
    if key is not None:
        if not key or len(key) > 255:
            raise _fail("breakdown.property", "metadata key must have 1 to 255 characters")
    elif b.property not in BREAKDOWN_COLUMNS:
        raise _fail("breakdown.property", f"unknown or unsupported property '{b.property}'")
    if b.attribution not in ("first_step", "last_step", "step"):
        raise _fail("breakdown.attribution", "must be first_step, last_step or step")
    if b.attribution == "step":
        if b.step is None or not _is_int(b.step) or not 1 <= b.step <= n:
            raise _fail("breakdown.step", f"must be a step in 1..{n}")
    elif b.step is not None:
        raise _fail("breakdown.step", "only with attribution step")


def _validate_cohort(c: CohortFilter) -> None:
    if c.subquery is not None and c.user_ids:
        raise _fail("cohort", "either user_ids or a subquery")
    if len(c.user_ids) > MAX_COHORT_IDS:
        raise _fail("cohort.user_ids", f"at most {MAX_COHORT_IDS}")
    if not all(isinstance(u, str) and u for u in c.user_ids):
        raise _fail("cohort.user_ids", "must be non-empty strings")
    if c.subquery is not None and not all(k.startswith("cohort_") for k, _ in c.subquery.params):
        raise _fail("cohort.subquery", "parameter names must start with cohort_")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- JSON-shaped input ---------------------------------------------------------------------------------

_SPEC_KEYS = {
    "steps", "date_from", "date_to", "mode", "window_ms", "count_by", "exclusions", "breakdown",
    "cohort_user_ids", "session_timeout_ms", "entities_limit", "entities_offset", "breakdown_limit",
}  # fmt: skip


def parse_funnel_spec(obj: Mapping[str, Any]) -> FunnelSpec:
    """A spec from JSON-shaped input.

    ``steps``: matchers or ``{"matcher": {...}, "window_ms": 600000, "name": "..."}``; dates as
    :class:`datetime` or RFC 3339 strings; ``exclusions``: ``[{"matcher": {...}, "after_step": 1}]``;
    ``breakdown``: ``{"property": "page_path" | "page.path" | "metadata.plan", "attribution": ..., "step": N}``;
    ``cohort_user_ids``: a list of user ids.
    """
    if not isinstance(obj, Mapping):
        raise _fail("funnel", "must be an object")
    unknown = sorted(set(obj) - _SPEC_KEYS)
    if unknown:
        raise _fail(unknown[0], "unknown field")
    raw_steps = obj.get("steps")
    if not isinstance(raw_steps, list):
        raise _fail("steps", "must be a list")
    if not MIN_STEPS <= len(raw_steps) <= MAX_STEPS:
        raise _fail("steps", f"needs {MIN_STEPS} to {MAX_STEPS} steps, got {len(raw_steps)}")
    steps = tuple(_parse_step(i, raw) for i, raw in enumerate(raw_steps, start=1))
    raw_ex = obj.get("exclusions") or []
    if not isinstance(raw_ex, list):
        raise _fail("exclusions", "must be a list")
    exclusions = tuple(_parse_exclusion(i, raw) for i, raw in enumerate(raw_ex, start=1))
    ids = obj.get("cohort_user_ids")
    if ids is not None and not isinstance(ids, list):
        raise _fail("cohort_user_ids", "must be a list of user ids")
    kwargs: dict[str, Any] = {
        "steps": steps,
        "date_from": _parse_dt("date_from", obj.get("date_from")),
        "date_to": _parse_dt("date_to", obj.get("date_to")),
        "exclusions": exclusions,
        "breakdown": _parse_breakdown(obj.get("breakdown")),
        "cohort": None if ids is None else CohortFilter(user_ids=frozenset(ids)),
    }
    for key in ("mode", "window_ms", "count_by", "session_timeout_ms", "entities_limit", "entities_offset",
                "breakdown_limit"):  # fmt: skip
        if obj.get(key) is not None:
            kwargs[key] = obj[key]
    return FunnelSpec(**kwargs)


def _matcher(where: str, raw: Any) -> Matcher:
    try:
        return parse_matcher(raw)
    except MatcherError as exc:
        raise _fail(where, str(exc)) from None


def _parse_step(i: int, raw: Any) -> FunnelStep:
    if isinstance(raw, dict) and "matcher" in raw:
        extra = sorted(set(raw) - {"matcher", "window_ms", "name"})
        if extra:
            raise _fail(f"steps[{i}].{extra[0]}", "unknown field")
        name = raw.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise _fail(f"steps[{i}].name", "must be a string of at most 255 characters")
        return FunnelStep(_matcher(f"steps[{i}].matcher", raw["matcher"]), raw.get("window_ms"), name)
    return FunnelStep(_matcher(f"steps[{i}]", raw))


def _parse_exclusion(i: int, raw: Any) -> Exclusion:
    if not isinstance(raw, dict) or set(raw) != {"matcher", "after_step"}:
        raise _fail(f"exclusions[{i}]", "must be {matcher, after_step}")
    return Exclusion(_matcher(f"exclusions[{i}].matcher", raw["matcher"]), raw["after_step"])


def _parse_breakdown(raw: Any) -> Breakdown | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("property"), str):
        raise _fail("breakdown", "must be {property, attribution?, step?}")
    extra = sorted(set(raw) - {"property", "attribution", "step"})
    if extra:
        raise _fail(f"breakdown.{extra[0]}", "unknown field")
    prop: str = raw["property"]
    prop = _DOTTED_TO_COLUMN.get(prop, prop)
    return Breakdown(prop, raw.get("attribution", "first_step"), raw.get("step"))


def _parse_dt(name: str, raw: Any) -> datetime:
    if isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise _fail(name, "must be an RFC 3339 timestamp") from None
        if dt.tzinfo is not None:
            return dt
    raise _fail(name, "must be an RFC 3339 timestamp with an offset")
