"""The freshness statistic of ``productgraph bench pipeline`` (pure): from each 202 to the first GraphQL
answer at or after it that counts every event accepted up to then."""

from __future__ import annotations

import pytest

from productgraph.bench.pipeline import FreshnessSample, freshness


def test_each_request_waits_for_the_first_poll_counting_everything_accepted_by_then() -> None:
    accepted = [FreshnessSample(1.0, 100), FreshnessSample(1.5, 100), FreshnessSample(2.0, 50)]
    polls = [(0.9, 0), (1.2, 100), (1.4, 100), (1.6, 150), (2.1, 200), (2.6, 250)]
    # 1.0 -> 1.2 (100 >= 100); 1.5 -> 2.1 (200 >= 200; 1.6 counts only 150); 2.0 -> 2.6 (250)
    assert freshness(accepted, polls) == pytest.approx([0.2, 0.6, 0.6])


def test_a_poll_before_the_202_never_counts_even_if_its_count_is_high_enough() -> None:
    # the count already includes the events (another writer, or the 202 raced the poll): still measured after
    assert freshness([FreshnessSample(5.0, 10)], [(4.0, 10), (5.3, 10)]) == pytest.approx([0.3])


def test_requests_never_covered_are_left_out_and_order_of_inputs_does_not_matter() -> None:
    accepted = [FreshnessSample(2.0, 10), FreshnessSample(1.0, 10)]
    assert freshness(accepted, [(3.0, 10), (1.5, 5)]) == pytest.approx([2.0])
    assert freshness(accepted, []) == []


@pytest.mark.parametrize("bad", ["BATCH_MAX_RECORDS=1", "PG_BATCH_MAX_RECORDS"])
def test_processor_settings_must_be_pg_name_value_and_are_refused_before_anything_runs(bad: str) -> None:
    from click.testing import CliRunner

    from productgraph.bench.pipeline import pipeline

    result = CliRunner().invoke(pipeline, ["--stack", "/nonexistent/stack.json", "--processor-env", bad])
    assert result.exit_code == 2 and "PG_NAME=VALUE" in result.output
