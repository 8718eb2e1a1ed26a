-- Journey progress per (journey, session segment), as the sessions processor computes it
-- (stream_processors/journeys.py): written with the same version as the segment's sessions row, whenever
-- the segment changes; the latest version wins and is_deleted = 1 hides a row whose segment was merged
-- away or no longer enters the journey.  Read with FINAL.
-- status is as computed from the events: the newest segment of a session is 'pending' until it closes;
-- readers take a 'pending' row with closes_at < now as 'bounced' (steps_reached = 1) or 'dropped'.
-- No partition key: entered_at can move with a late event, and rows of one key must replace each other.
-- The TTL is the global upper bound like sessions' (0004: per-project retention deletes earlier).
-- Columns must match schemas/rows.py JOURNEY_SESSION_COLUMNS.
CREATE TABLE IF NOT EXISTS journey_sessions
(
    org_id UUID,
    project_id UUID,
    journey_id String,
    session_id String,
    segment UInt32,
    version UInt64,
    is_deleted UInt8,
    status LowCardinality(String),
    steps_reached UInt16,
    step_count UInt16,
    last_step_position UInt16,
    last_step_id String,
    entered_at DateTime64(3, 'UTC'),
    step_times Array(DateTime64(3, 'UTC')),
    converted_at Nullable(DateTime64(3, 'UTC')),
    duration_ms UInt64,
    attempts UInt16,
    closes_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (org_id, project_id, journey_id, session_id, segment)
TTL toDateTime(closes_at) + INTERVAL 3650 DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;
