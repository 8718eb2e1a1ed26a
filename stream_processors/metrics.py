"""Prometheus metrics of a processor worker."""

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
