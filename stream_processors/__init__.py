"""Stream processors: Kafka consumer-group workers, one kind per process, scaled by adding processes."""
