"""The embedded local stack: real Kafka-protocol, ClickHouse, PostgreSQL and Redis servers from wheels.

Each server runs as its own OS process, started and stopped by :mod:`productgraph.localstack.supervisor`
(``productgraph up``) or by the test fixtures.  No Docker engine is needed.
"""
