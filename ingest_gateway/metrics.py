"""Prometheus metrics of the gateway (process-global, exposed at ``GET /metrics``)."""

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACCEPTED",
    "ADMISSION_FAILURES",
    "BATCH_SIZE",
    "DUPLICATE",
    "EVENTS",
    "IN_FLIGHT",
    "PRODUCE_SECONDS",
    "REJECTED",
    "REQUESTS",
    "UNKNOWN_FIELDS",
    "request_answered",
]

REQUESTS = Counter("productgraph_gateway_requests_total", "ingest requests by HTTP status", ["status"])
EVENTS = Counter("productgraph_gateway_events_total", "events by outcome (accepted, rejected, duplicate)", ["outcome"])
BATCH_SIZE = Histogram(
    "productgraph_gateway_batch_events", "events per request", buckets=(1, 5, 20, 50, 100, 250, 500, 1000)
)
PRODUCE_SECONDS = Histogram(
    "productgraph_gateway_produce_seconds",
    "time until Kafka acknowledged a request's records",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNKNOWN_FIELDS = Counter(
    "productgraph_gateway_unknown_fields_total", "unknown event keys kept as extra attributes (newer SDKs)"
)
IN_FLIGHT = Gauge("productgraph_gateway_in_flight_requests", "ingest requests being handled")
ADMISSION_FAILURES = Counter(
    "productgraph_gateway_admission_unavailable_total",
    "requests admitted without rate limit and dedup because Redis did not answer",
)

# Labelled children looked up once: ``labels()`` hashes and locks on every call.
ACCEPTED = EVENTS.labels(outcome="accepted")
REJECTED = EVENTS.labels(outcome="rejected")
DUPLICATE = EVENTS.labels(outcome="duplicate")
_BY_STATUS: dict[int, Counter] = {}


def request_answered(status: int) -> None:
    child = _BY_STATUS.get(status)
    if child is None:
        child = _BY_STATUS[status] = REQUESTS.labels(status=str(status))
    child.inc()
