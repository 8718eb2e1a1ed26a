"""The one definition of every wire format: ingest events, Kafka records and topics, ClickHouse rows."""
