"""Kafka topics: name, key, partitions, who produces and who consumes.  The only place topic names live."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEAD_LETTERS", "EVENTS", "TOPICS", "TopicSpec"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]


EVENTS = TopicSpec(
    name="productgraph.events",
    key="{project_id}:{session.id}",
    partitions=6,
    producers=("ingest_gateway",),
    consumers=("warehouse", "sessions"),
)
DEAD_LETTERS = TopicSpec(
    name="productgraph.dead-letters",
    key="origin key",
    partitions=1,
    producers=("stream_processors",),
    consumers=("productgraph dlq",),
)
TOPICS: tuple[TopicSpec, ...] = (EVENTS, DEAD_LETTERS)
