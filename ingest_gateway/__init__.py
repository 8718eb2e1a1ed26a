"""Ingest gateway: ``POST /v1/events`` → validate → publish to Kafka (acks=all) → 202."""
