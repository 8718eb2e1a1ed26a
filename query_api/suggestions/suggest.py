"""Journeys worth defining (pure): frequent page sequences after a session's entry page, minus what the
project's journeys already cover.

Input: the top paths after the first ``page.view`` of each session segment (:mod:`query_api.paths`) and the
project's journeys.  A path's consecutive repeats (reloads) are collapsed; sequences shorter than two pages
are dropped; equal sequences are summed.  A sequence is *covered* when an existing journey's steps, read as
exact page paths, are that sequence (or a longer one starting with it), so re-suggesting it would add
nothing.  Ranked by sessions (then by longer sequences, then alphabetically, for a stable answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.matchers import Matcher

__all__ = ["JourneySuggestion", "suggest_journeys"]


@dataclass(frozen=True, slots=True)
class JourneySuggestion:
    name: str
    pages: tuple[str, ...]
    sessions: int
    share: float  # of the segments with an entry page view, 6 decimals

    def steps(self) -> list[dict[str, str]]:
        """The steps as matchers, ready for ``createJourney``."""
        return [{"event_type": "page.view", "page_path": p, "page_path_mode": "exact"} for p in self.pages]


def _collapse(nodes: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for n in nodes:
        if not out or out[-1] != n:
            out.append(n)
    return tuple(out)


def _journey_pages(steps: Sequence[Matcher]) -> tuple[str, ...] | None:
    """A journey's steps as a page sequence, when every step is an exact page path (else it covers nothing)."""
    pages = []
    for m in steps:
        if m.page_path is None or m.page_path_mode != "exact":
            return None
        pages.append(m.page_path)
    return tuple(pages)


def suggest_journeys(
    paths: Iterable[tuple[Sequence[str], int]],
    anchored: int,
    journeys: Iterable[Sequence[Matcher]],
    limit: int = 5,
) -> list[JourneySuggestion]:
    """``paths``: (pages after the entry page view, sessions); ``anchored``: segments with an entry page view."""
    counts: dict[tuple[str, ...], int] = {}
    for nodes, n in paths:
        seq = _collapse(nodes)
        if len(seq) >= 2:
            counts[seq] = counts.get(seq, 0) + n
    covered = [p for p in (_journey_pages(steps) for steps in journeys) if p]
    ranked = sorted(
        (seq for seq in counts if not any(c[: len(seq)] == seq for c in covered)),
        key=lambda s: (-counts[s], -len(s), s),
    )
    return [
        JourneySuggestion(
            name=" → ".join(seq),
            pages=seq,
            sessions=counts[seq],
            share=round(counts[seq] / anchored, 6) if anchored else 0.0,
        )
        for seq in ranked[:limit]
    ]
