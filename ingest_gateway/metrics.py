"""Prometheus metrics of the gateway."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("productgraph_gateway_requests_total", "ingest requests by HTTP status", ["status"])
EVENTS = Counter("productgraph_gateway_events_total", "events by outcome", ["outcome"])
BATCH_SIZE = Histogram(
    "productgraph_gateway_batch_events", "events per request", buckets=(1, 5, 20, 50, 100, 250, 500, 1000)
)
PRODUCE_SECONDS = Histogram("productgraph_gateway_produce_seconds", "time until Kafka acknowledged a batch")
