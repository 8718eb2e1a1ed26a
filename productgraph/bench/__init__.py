"""``productgraph bench ...``: benchmarks that drive the real services, print figures and write a JSON report."""

from __future__ import annotations

import click

__all__ = ["bench"]


@click.group()
def bench() -> None:
    """Benchmarks against a running stack (see `productgraph up`); each prints figures and writes JSON."""


from productgraph.bench.query import query as _query  # noqa: E402

bench.add_command(_query)
from productgraph.bench.ingest import ingest as _ingest  # noqa: E402

bench.add_command(_ingest)
from productgraph.bench.pipeline import pipeline as _pipeline  # noqa: E402

bench.add_command(_pipeline)
