"""Stream processors: Kafka consumer-group workers, one kind per process, scaled by adding processes."""

# Each kind is its own consumer group and process; stream_processors.worker.KINDS builds their sinks.
KIND_NAMES: tuple[str, ...] = ("warehouse", "sessions")
