-- Sessions as the sessionizer computes them: one row per (session, segment) and version.  A segment's
-- attributes are recomputed whenever an event (late ones too) changes it and written with a higher
-- version; the latest version wins, and a row with is_deleted = 1 hides a segment that a late event
-- merged into an earlier one.  Read with FINAL.  No partition key: started_at can move with a late event,
-- and rows of one key must stay in one partition to replace each other.
-- Columns must match schemas/rows.py SESSION_COLUMNS.
CREATE TABLE IF NOT EXISTS sessions
(
    org_id UUID,
    project_id UUID,
    session_id String,
    segment UInt32,
    version UInt64,
    is_deleted UInt8,
    started_at DateTime64(3, 'UTC'),
    ended_at DateTime64(3, 'UTC'),
    duration_ms UInt64,
    entry_page String,
    exit_page String,
    page_views UInt32,
    unique_pages UInt32,
    event_count UInt32,
    error_count UInt32,
    user_id String,
    device LowCardinality(String),
    browser LowCardinality(String),
    os LowCardinality(String),
    journey_id String,
    last_journey_step_id String,
    conversion_status LowCardinality(String),
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (org_id, project_id, session_id, segment)
TTL toDateTime(ended_at) + INTERVAL 365 DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

-- Processors send an insert_deduplication_token per batch; a single server keeps the hashes of the last
-- 1000 inserted blocks only with this setting (replicated tables deduplicate by default).
ALTER TABLE events MODIFY SETTING non_replicated_deduplication_window = 1000;
