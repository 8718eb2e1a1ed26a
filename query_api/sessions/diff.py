"""The structural diff of a ``state.change`` event: ``ui.state.before`` → ``ui.state.after`` (pure).

Precise rule 13 of analytics-semantics.md, exactly:

* each side is parsed as strict JSON (:func:`parse_state`); text that is not JSON stays a string, a
  missing (empty) field is ``null``;
* objects are compared by key, arrays by index (no move detection: an element inserted at the front
  shows as changes at every later index plus one addition at the end);
* a value or a type change is ``changed``; JSON has one number type, so ``1`` and ``1.0`` are equal,
  while ``true`` and ``1`` differ (boolean vs number);
* a missing side is ``null``, so "nothing before, an object after" is one change at ``$`` (null → object),
  not an addition per key.

Paths: ``$`` is the whole state; ``.key`` for keys that are ASCII identifiers (``[A-Za-z_][A-Za-z0-9_]*``);
every other key is written ``["key"]`` with JSON string escaping (non-ASCII kept as is), e.g. ``$["a.b"]``,
``$["prénom"]``, ``$[""]``, ``$["0"]`` (an object key, unlike the array index ``$[0]``); array indexes are
``[i]``.  A path therefore names one node unambiguously and reads like ``$.a.b[0]``.

Bounds (states are at most an event's 100 KB, but a diff must never be the expensive part of a replay):
the walk is iterative (no recursion), visits at most :data:`MAX_NODES` node pairs and reports at most
:data:`MAX_ENTRIES` entries; a state nested deeper than :data:`MAX_DEPTH` levels is compared as text
(one ``changed`` at ``$`` when the texts differ).  Whenever a bound cuts the answer short,
``truncated`` is true and what was reported is still correct.  Entries come in document order (keys of
``before`` in their order, then keys only in ``after``; indexes ascending).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_NODES",
    "PathChange",
    "StateDiff",
    "diff_states",
    "diff_values",
    "format_key",
    "parse_state",
]

MAX_DEPTH = 64
MAX_NODES = 20_000
MAX_ENTRIES = 1_000

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class PathChange:
    """One node: ``old`` is absent (None) for an addition, ``new`` for a removal."""

    path: str
    old: Any = None
    new: Any = None


@dataclass(frozen=True, slots=True)
class StateDiff:
    added: list[PathChange] = field(default_factory=list)
    removed: list[PathChange] = field(default_factory=list)
    changed: list[PathChange] = field(default_factory=list)
    truncated: bool = False

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def parse_state(text: str | None) -> Any:
    """The JSON value of a state field: ``None`` when missing or empty, the text itself when not JSON."""
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # also nesting deeper than orjson's 1024 levels: kept as text
        return text


def format_key(key: str) -> str:
    """The path step for an object key (see the module docstring)."""
    if _IDENTIFIER.match(key):
        return f".{key}"
    return "[" + orjson.dumps(key).decode() + "]"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def diff_states(before: str | None, after: str | None) -> StateDiff:
    """The diff of two raw state fields (as stored: JSON text, other text, or empty for missing)."""
    old, new = parse_state(before), parse_state(after)
    if _depth_exceeds(old, MAX_DEPTH) or _depth_exceeds(new, MAX_DEPTH):
        same = (before or "") == (after or "")
        return StateDiff(changed=[] if same else [PathChange("$", before or None, after or None)], truncated=True)
    return diff_values(old, new)


def diff_values(old: Any, new: Any) -> StateDiff:
    """The diff of two parsed JSON values (depth is the caller's concern: see :func:`diff_states`)."""
    added: list[PathChange] = []
    removed: list[PathChange] = []
    changed: list[PathChange] = []
    # Depth-first, children pushed in reverse so that entries come out in document order.
    stack: list[tuple[str, Any, Any]] = [("$", old, new)]
    visited = 0
    truncated = False
    while stack:
        if visited >= MAX_NODES or len(added) + len(removed) + len(changed) >= MAX_ENTRIES:
            truncated = True
            break
        path, a, b = stack.pop()
        visited += 1
        if b is _MISSING:
            removed.append(PathChange(path, old=a))
        elif a is _MISSING:
            added.append(PathChange(path, new=b))
        elif isinstance(a, dict) and isinstance(b, dict):
            children = [(path + format_key(k), v, b.get(k, _MISSING)) for k, v in a.items()]
            children += [(path + format_key(k), _MISSING, v) for k, v in b.items() if k not in a]
            stack.extend(reversed(children))
        elif isinstance(a, list) and isinstance(b, list):
            n = max(len(a), len(b))
            stack.extend(
                (f"{path}[{i}]", a[i] if i < len(a) else _MISSING, b[i] if i < len(b) else _MISSING)
                for i in reversed(range(n))
            )
        elif _kind(a) != _kind(b) or a != b:
            changed.append(PathChange(path, old=a, new=b))
    return StateDiff(added, removed, changed, truncated)
