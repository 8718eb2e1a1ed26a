"""A project's ingest policy: its settings (``projects.settings`` jsonb) over the gateway defaults (pure).

Keys read from the project settings; a missing or unusable value falls back to the gateway default, so a
typo in a project's settings never blocks its ingestion:

``rate_limit_per_s``  events per second (number > 0; 0 means unlimited)
``rate_limit_burst``  token-bucket size in events (default: the gateway's, else 2 s of the rate; raised
                      to at least one full batch so a batch of 1000 can always pass)
``dedup_window_s``    seconds during which a repeated ``event_id`` is a duplicate (0: no dedup)
``cors_origins``      list of allowed browser origins (``"*"`` in it, or absent: any origin)

``resolve_api_key`` already merges ``project_settings_defaults()`` (migration 0002) under the project's
own settings, and a check constraint keeps the stored values valid; the fallbacks here are a backstop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.ingest import MAX_EVENTS_PER_BATCH

__all__ = ["ProjectPolicy", "project_policy"]


@dataclass(frozen=True, slots=True)
class ProjectPolicy:
    rate_per_s: float  # 0: unlimited
    burst: int
    dedup_window_s: int  # 0: no dedup
    cors_origins: frozenset[str] | None  # None: any origin

    def origin_allowed(self, origin: str) -> bool:
        return self.cors_origins is None or origin in self.cors_origins


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return None
    return float(value)


def project_policy(settings: Mapping[str, Any], *, rate_per_s: float, burst: int, dedup_window_s: int) -> ProjectPolicy:
    """The effective policy of a project from its settings and the gateway defaults."""
    rate = _number(settings.get("rate_limit_per_s"))
    rate = rate_per_s if rate is None else rate
    size = _number(settings.get("rate_limit_burst"))
    size_i = int(size) if size else burst or int(2 * rate)
    window = _number(settings.get("dedup_window_s"))
    window_i = dedup_window_s if window is None else int(window)
    origins = settings.get("cors_origins")
    allowed: frozenset[str] | None = None
    if isinstance(origins, list) and "*" not in origins:
        allowed = frozenset(o.rstrip("/") for o in origins if isinstance(o, str))
    return ProjectPolicy(rate, max(size_i, MAX_EVENTS_PER_BATCH), window_i, allowed)
