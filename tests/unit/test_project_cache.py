"""The process-wide project cache of the query API: per org, expiring, forgettable."""

from __future__ import annotations

from query_api.context import ProjectCache


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_answer_their_org_only_and_expire() -> None:
    clock = _Clock()
    cache = ProjectCache(10, clock)
    cache.put("org-a", "demo", "p-a")
    assert cache.get("org-a", "demo") == "p-a"
    assert cache.get("org-b", "demo") is None  # the same slug in another org is another lookup
    clock.now += 9.9
    assert cache.get("org-a", "demo") == "p-a"
    clock.now += 0.2
    assert cache.get("org-a", "demo") is None


def test_forget_org_drops_that_org_only() -> None:
    cache = ProjectCache(10, _Clock())
    cache.put("org-a", "demo", "p-a")
    cache.put("org-a", "p-a", "p-a")
    cache.put("org-b", "demo", "p-b")
    cache.forget_org("org-a")
    assert cache.get("org-a", "demo") is None and cache.get("org-a", "p-a") is None
    assert cache.get("org-b", "demo") == "p-b"


def test_zero_ttl_caches_nothing() -> None:
    cache = ProjectCache(0, _Clock())
    cache.put("org-a", "demo", "p-a")
    assert cache.get("org-a", "demo") is None
