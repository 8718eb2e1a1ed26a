"""Journey suggestions (pure): collapsed reloads, summed sequences, coverage by existing journeys, ranking."""

from __future__ import annotations

from query_api.suggestions import suggest_journeys
from schemas.matchers import Matcher, parse_matcher

PATHS = [
    (("/products", "/cart", "/checkout"), 3),
    (("/products", "/cart"), 2),
    (("/products", "/products", "/cart"), 1),  # a reload: the same sequence as the one above
    (("/search",), 4),  # one page after the entry: nothing to suggest
    ((), 5),
    (("/account", "/orders"), 3),
    (("/blog", "/about"), 1),
]


def _pages(*paths: str, mode: str = "exact") -> list[Matcher]:
    return [parse_matcher({"event_type": "page.view", "page_path": p, "page_path_mode": mode}) for p in paths]


def test_ranked_by_sessions_then_length_then_name_with_shares() -> None:
    got = suggest_journeys(PATHS, 20, [])
    assert [(s.pages, s.sessions, s.share) for s in got] == [
        (("/products", "/cart", "/checkout"), 3, 0.15),
        (("/account", "/orders"), 3, 0.15),
        (("/products", "/cart"), 3, 0.15),  # 2 + 1 (the reload collapsed)
        (("/blog", "/about"), 1, 0.05),
    ]
    assert got[0].name == "/products → /cart → /checkout"
    assert got[0].steps()[1] == {"event_type": "page.view", "page_path": "/cart", "page_path_mode": "exact"}
    assert len(suggest_journeys(PATHS, 20, [], limit=2)) == 2


def test_a_journey_covers_its_sequence_and_its_prefixes_only() -> None:
    got = suggest_journeys(PATHS, 20, [_pages("/products", "/cart"), _pages("/account", "/orders", "/x")])
    # /products → /cart is the journey itself; /account → /orders a prefix of the other journey
    assert [s.pages for s in got] == [("/products", "/cart", "/checkout"), ("/blog", "/about")]


def test_journeys_that_are_not_exact_page_sequences_cover_nothing() -> None:
    glob = _pages("/products", "/cart", mode="glob")
    clicks = [parse_matcher({"event_type": "ui.click"}), *_pages("/cart")]
    assert len(suggest_journeys(PATHS, 20, [glob, clicks])) == 4


def test_no_anchored_sessions_gives_zero_shares() -> None:
    assert suggest_journeys([(("/a", "/b"), 0)], 0, [])[0].share == 0.0
