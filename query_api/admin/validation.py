"""Input checks of the admin surface, pure: each returns the normalised value or raises :class:`InvalidInput`
naming the argument.  The database re-checks the same limits (CHECK constraints) as a backstop.

Saved funnel and cohort definitions are checked by a validator per kind; the analytics code that runs
them may install a stricter one with :func:`register_definition_validator`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from query_api.errors import InvalidInput, NotFound
from schemas.matchers import MatcherError, parse_matcher

__all__ = [
    "DefinitionValidator",
    "JourneyStepValue",
    "ProjectSettingsModel",
    "parse_id",
    "register_definition_validator",
    "storable",
    "validate_definition",
    "validate_email",
    "validate_journey_steps",
    "validate_json",
    "validate_settings",
    "validate_slug",
    "validate_text",
]

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
ORIGIN = re.compile(r"^(\*|https?://[A-Za-z0-9.-]+(:\d{1,5})?)$")
MAX_DEFINITION_BYTES = 64 * 1024
MIN_STEPS, MAX_STEPS = 2, 100


def parse_id(value: object, what: str) -> uuid.UUID:
    """An id argument; anything that is not a UUID is simply not found (same answer as an unknown one)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} {str(value)!r} not found") from None


def storable(value: str) -> bool:
    """Whether Postgres can store the string: valid UTF-8 (no lone surrogates) and no NUL."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def validate_text(value: str, field: str, *, max_len: int = 255, required: bool = True) -> str:
    text = value.strip()
    if not storable(text):
        raise InvalidInput(f"{field}: contains NUL or invalid unicode")
    if required and not text:
        raise InvalidInput(f"{field}: must not be empty")
    if len(text) > max_len:
        raise InvalidInput(f"{field}: at most {max_len} characters")
    return text


def validate_json(value: object, field: str, *, max_bytes: int = 64 * 1024) -> None:
    """A JSON value Postgres can store (as jsonb) within ``max_bytes``."""
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        raise InvalidInput(f"{field}: not storable JSON (numbers beyond 64 bits or invalid unicode)") from None
    if size > max_bytes:
        raise InvalidInput(f"{field}: larger than {max_bytes // 1024} KB")
    if _has_nul(value):
        raise InvalidInput(f"{field}: contains NUL characters")


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def validate_slug(value: str, field: str = "slug") -> str:
    if not SLUG.match(value):
        raise InvalidInput(f"{field}: lower-case letters, digits, '-' and '_', starting with a letter or digit")
    return value


def validate_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not EMAIL.match(email):
        raise InvalidInput("email: not an email address")
    return email


class ProjectSettingsModel(BaseModel):
    """The stored overrides of ``projects.settings``; the defaults live in deploy/postgres/0002."""

    model_config = ConfigDict(extra="forbid", strict=True)

    session_timeout_minutes: int | None = Field(None, ge=1, le=1440)
    dedup_window_s: int | None = Field(None, ge=0, le=604_800)
    rate_limit_per_s: int | None = Field(None, ge=0, le=1_000_000)
    rate_limit_burst: int | None = Field(None, ge=1, le=10_000_000)
    retention_days: int | None = Field(None, ge=1, le=3650)
    cors_origins: list[str] | None = Field(None, max_length=100)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        for origin in value or []:
            if len(origin) > 255 or not ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not '*' or scheme://host[:port]")
        return value


def validate_settings(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Stored overrides after applying ``changes`` (a ``None`` value removes the override)."""
    merged = {**current, **changes}
    try:
        model = ProjectSettingsModel.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"settings.{where}: {err['msg']}") from None
    return model.model_dump(exclude_none=True)


class JourneyStepValue(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    matcher: dict[str, Any]
    is_required: bool


def validate_journey_steps(steps: Sequence[tuple[str, object, bool]]) -> list[JourneyStepValue]:
    """``(name, matcher, is_required)`` in order → normalised steps; matchers through ``parse_matcher``."""
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise InvalidInput(f"steps: between {MIN_STEPS} and {MAX_STEPS} steps")
    out = []
    for i, (name, matcher, required) in enumerate(steps, start=1):
        validate_json(matcher, f"steps[{i}].matcher", max_bytes=16 * 1024)
        try:
            parsed = parse_matcher(matcher)
        except MatcherError as exc:
            raise InvalidInput(f"steps[{i}].matcher.{exc}") from None
        out.append(
            JourneyStepValue(
                name=validate_text(name, f"steps[{i}].name"), matcher=parsed.as_dict(), is_required=required
            )
        )
    return out


DefinitionValidator = Callable[[dict[str, Any]], dict[str, Any]]


def _funnel_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """At least: ``steps`` of 2..100 entries, each a matcher or ``{"matcher": {...}, ...}``."""
    steps = definition.get("steps")
    if not isinstance(steps, list) or not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise InvalidInput(f"definition.steps: a list of {MIN_STEPS} to {MAX_STEPS} steps")
    for i, step in enumerate(steps, start=1):
        matcher = step.get("matcher") if isinstance(step, dict) and "matcher" in step else step
        try:
            parse_matcher(matcher)
        except MatcherError as exc:
            raise InvalidInput(f"definition.steps[{i}]: {exc}") from None
    return definition


def _cohort_definition(definition: dict[str, Any]) -> dict[str, Any]:
    if not definition:
        raise InvalidInput("definition: must not be empty")
    return definition


_VALIDATORS: dict[str, DefinitionValidator] = {"funnel": _funnel_definition, "cohort": _cohort_definition}


def register_definition_validator(kind: str, validator: DefinitionValidator) -> None:
    """Replace the check of saved ``kind`` ("funnel" or "cohort") definitions (e.g. by the funnel engine)."""
    if kind not in _VALIDATORS:
        raise ValueError(f"unknown definition kind {kind!r}")
    _VALIDATORS[kind] = validator


def validate_definition(kind: str, definition: object) -> dict[str, Any]:
    if not isinstance(definition, dict):
        raise InvalidInput("definition: must be a JSON object")
    validate_json(definition, "definition", max_bytes=MAX_DEFINITION_BYTES)
    return _VALIDATORS[kind](definition)
