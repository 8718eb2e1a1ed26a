"""Prometheus metrics of a processor worker (served on ``/metrics`` by :mod:`stream_processors.ops`).

Records per second is ``rate(productgraph_processor_records_total[1m])``.  Consumer lag is computed by
the runner without the broker's "latest offset" answer (wrong on the local Tansu broker): per partition,
``max(high watermark carried by fetch responses, highest offset fetched + 1) - committed offset``; see
``BatchRunner.lag``.
"""

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter("productgraph_processor_records_total", "records consumed", ["kind"])
DEAD_LETTERS = Counter("productgraph_processor_dead_letters_total", "records sent to the dead-letter topic", ["kind"])
SINK_ERRORS = Counter("productgraph_processor_sink_errors_total", "failed flush/commit attempts", ["kind", "sink"])
BATCH_SECONDS = Histogram("productgraph_processor_batch_seconds", "flush + commit time of a batch", ["kind"])
BATCH_RECORDS = Histogram(
    "productgraph_processor_batch_records",
    "records per committed batch",
    ["kind"],
    buckets=(1, 10, 100, 1000, 5000, 10000, 50000),
)
COMMITTED = Gauge("productgraph_processor_committed_offset", "last committed offset", ["kind", "partition"])
LAG = Gauge(
    "productgraph_processor_consumer_lag",
    "records of the partition not yet committed by this group (fetch high watermark or last fetched + 1, "
    "minus the committed offset)",
    ["kind", "partition"],
)
PAUSED = Gauge("productgraph_processor_paused", "1 while consumption is paused because a sink is failing", ["kind"])
SESSION_ROWS = Counter("productgraph_processor_session_rows_total", "rows written to ClickHouse sessions", ["kind"])
SESSION_EVENTS_NOT_APPLIED = Counter(
    "productgraph_processor_session_events_not_applied_total",
    "events older than their session's live state: stored in the warehouse, not applied to session rows",
    ["kind"],
)
