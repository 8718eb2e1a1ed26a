"""The step matcher language shared by journeys (processors) and funnels (query API).

A matcher is the AND of its fields (no implicit event type):
``{"event_type": "page.view", "page_path": "/checkout/*", "page_path_mode": "glob"}``.
Fields: ``event_type``, ``event_name``, ``page_path`` (+ ``page_path_mode``: exact | prefix | glob),
``component`` (``ui.component.name``), ``action`` (``ui.action``), ``journey_id`` + ``step_id``
(explicit ``gen_ai.journey.*``), ``metadata`` (``{key: value}``, every pair must be equal).
The same matcher is evaluated in Python (:func:`matches`) and compiled to a ClickHouse condition with
bound parameters (:func:`to_clickhouse`); both must agree (tests check it on the same events).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from schemas.fields import EVENT_TYPES
from schemas.records import EventRecord

__all__ = ["Matcher", "MatcherError", "matches", "parse_matcher", "to_clickhouse"]

PathMode = Literal["exact", "prefix", "glob"]
_KEYS = {"event_type", "event_name", "page_path", "page_path_mode", "component", "action", "journey_id",
         "step_id", "metadata"}  # fmt: skip
_MAX_LEN = 1024


class MatcherError(ValueError):
    """A matcher that cannot be used; the message is ``<field>: <reason>``."""


@dataclass(frozen=True, slots=True)
class Matcher:
    event_type: str | None = None
    event_name: str | None = None
    page_path: str | None = None
    page_path_mode: PathMode = "exact"
    component: str | None = None
    action: str | None = None
    journey_id: str | None = None
    step_id: str | None = None
    metadata: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("event_type", "event_name", "page_path", "component", "action", "journey_id", "step_id")
            if getattr(self, k) is not None
        }
        if self.page_path is not None:
            out["page_path_mode"] = self.page_path_mode
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


def parse_matcher(obj: Any) -> Matcher:
    if not isinstance(obj, dict):
        raise MatcherError("matcher: must be an object")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise MatcherError(f"{unknown[0]}: unknown matcher field")
    values: dict[str, Any] = {}
    for key in ("event_type", "event_name", "page_path", "component", "action", "journey_id", "step_id"):
        v = obj.get(key)
        if v is None:
            continue
        if not isinstance(v, str) or not v or len(v) > _MAX_LEN:
            raise MatcherError(f"{key}: must be a non-empty string of at most {_MAX_LEN} characters")
        values[key] = v
    if "event_type" in values and values["event_type"] not in EVENT_TYPES:
        raise MatcherError(f"event_type: unknown type '{values['event_type']}'")
    mode = obj.get("page_path_mode", "exact")
    if mode not in ("exact", "prefix", "glob"):
        raise MatcherError("page_path_mode: must be exact, prefix or glob")
    if "step_id" in values and "journey_id" not in values:
        raise MatcherError("step_id: needs journey_id")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise MatcherError("metadata: must be an object of string values")
    m = Matcher(**values, page_path_mode=mode, metadata=tuple(sorted(meta.items())))
    if not values and not m.metadata:
        raise MatcherError("matcher: needs at least one condition")
    return m


def _path_matches(m: Matcher, path: str) -> bool:
    assert m.page_path is not None
    if m.page_path_mode == "exact":
        return path == m.page_path
    if m.page_path_mode == "prefix":
        return path.startswith(m.page_path)
    return fnmatch.fnmatchcase(path, m.page_path)


def matches(m: Matcher, rec: EventRecord) -> bool:
    f = rec.fields
    if m.event_type is not None and rec.event_type != m.event_type:
        return False
    if m.event_name is not None and f.get("event.name") != m.event_name:
        return False
    if m.page_path is not None and not _path_matches(m, str(f.get("page.path") or "")):
        return False
    if m.component is not None and f.get("ui.component.name") != m.component:
        return False
    if m.action is not None and f.get("ui.action") != m.action:
        return False
    if m.journey_id is not None and f.get("gen_ai.journey.id") != m.journey_id:
        return False
    if m.step_id is not None and f.get("gen_ai.journey.step.id") != m.step_id:
        return False
    # Compared as stored (schemas.rows): strings as they are, other JSON values as compact JSON text.
    return all(key in rec.metadata and _stored_text(rec.metadata[key]) == value for key, value in m.metadata)


def _stored_text(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def to_clickhouse(m: Matcher, name: str) -> tuple[str, dict[str, Any]]:
    """A ClickHouse boolean expression over ``events`` columns and its parameters (prefixed by ``name``)."""
    conds: list[str] = []
    params: dict[str, Any] = {}

    def eq(column: str, key: str, value: str) -> None:
        params[f"{name}_{key}"] = value
        conds.append(f"{column} = {{{name}_{key}:String}}")

    if m.event_type is not None:
        eq("event_type", "type", m.event_type)
    if m.event_name is not None:
        eq("event_name", "name", m.event_name)
    if m.page_path is not None:
        p = f"{name}_path"
        if m.page_path_mode == "exact":
            conds.append(f"page_path = {{{p}:String}}")
            params[p] = m.page_path
        elif m.page_path_mode == "prefix":
            conds.append(f"startsWith(page_path, {{{p}:String}})")
            params[p] = m.page_path
        else:
            conds.append(f"match(page_path, {{{p}:String}})")
            params[p] = _re2(m.page_path)
    if m.component is not None:
        eq("ui_component_name", "component", m.component)
    if m.action is not None:
        eq("ui_action", "action", m.action)
    if m.journey_id is not None:
        eq("journey_id", "journey", m.journey_id)
    if m.step_id is not None:
        eq("journey_step_id", "step", m.step_id)
    for i, (key, value) in enumerate(m.metadata):
        params[f"{name}_mk{i}"] = key
        params[f"{name}_mv{i}"] = value
        # mapContains: a missing key reads as '' from a Map, which must not equal a "" value
        key_param, value_param = f"{{{name}_mk{i}:String}}", f"{{{name}_mv{i}:String}}"
        conds.append(f"mapContains(metadata, {key_param}) AND metadata[{key_param}] = {value_param}")
    return " AND ".join(conds) or "1", params


def _re2(glob: str) -> str:
    """A glob as an anchored RE2 pattern with the meaning of :func:`fnmatch.fnmatchcase` (whose parsing of
    ``[...]`` sets is followed exactly: ``!`` negates, a leading ``]`` is literal, empty ranges vanish, an
    unclosed ``[`` is literal).  Every character outside ``[A-Za-z0-9_]`` is written as ``\\x{HEX}``, so
    nothing in the glob is RE2 syntax (``^``, ``[:alpha:]``, ``\\``...)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(_re2_char("["))
            else:
                out.append(_re2_set(glob, i, j))
                i = j + 1
        else:
            out.append(_re2_char(c))
    return "(?s)^" + "".join(out) + "$"


def _re2_char(c: str) -> str:
    return c if c.isascii() and (c.isalnum() or c == "_") else f"\\x{{{ord(c):X}}}"


def _re2_set(glob: str, i: int, j: int) -> str:
    """The set ``glob[i:j]`` (between ``[`` and ``]``), as fnmatch.translate builds it, in RE2 syntax."""
    stuff = glob[i:j]
    negate = stuff.startswith("!")
    if "-" not in stuff:
        chunks = [stuff[1:] if negate else stuff]
    else:
        # fnmatch's chunking: '-' separates range ends, except right after '[' or '[!'.
        chunks = []
        k = i + 2 if glob[i] == "!" else i + 1
        while True:
            k = glob.find("-", k, j)
            if k < 0:
                break
            chunks.append(glob[i:k])
            i = k + 1
            k = k + 3
        chunk = glob[i:j]
        if chunk:
            chunks.append(chunk)
        else:
            chunks[-1] += "-"
        for k in range(len(chunks) - 1, 0, -1):  # remove empty ranges
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
        if negate:
            chunks[0] = chunks[0][1:]
    # Consecutive chunks are joined by a range: the last char of one to the first char of the next.
    items: list[str] = []
    for idx, chunk in enumerate(chunks):
        chars = list(chunk)
        if idx > 0 and chars:
            items[-1] = f"{items[-1]}-{_re2_char_in_set(chars.pop(0))}"
        items.extend(_re2_char_in_set(ch) for ch in chars)
    if not items:
        # every range was empty: fnmatch matches any character when negated, nothing otherwise
        return "." if negate else "[^\\x{0}-\\x{10FFFF}]"
    return "[" + ("^" if negate else "") + "".join(items) + "]"


def _re2_char_in_set(c: str) -> str:
    return f"\\x{{{ord(c):X}}}"
