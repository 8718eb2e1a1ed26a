-- A second sort order of the columns that funnels (and other step-matcher queries) read, kept by
-- ClickHouse inside every part of `events` (a projection): sorted by the matcher columns, a funnel reads
-- only the granules of the event types / names / pages its steps match instead of every granule in the
-- date range (the main order is per session, so matching rows are spread over all granules).  Queries
-- need no change: the planner reads the projection when it covers the query's columns and reads fewer
-- marks, and the answer is the same data either way (a part and its projection hold the same rows,
-- duplicates included, and funnels drop duplicates in the query, not with FINAL).
-- ReplacingMergeTree refuses projections unless told how merges and lightweight deletes treat them:
-- 'rebuild' rebuilds the projection from the merged / deleted part, so it never keeps a row the part lost.
-- Existing parts get the projection by a background mutation; until then the planner uses the main order.
ALTER TABLE events MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild',
    lightweight_mutation_projection_mode = 'rebuild';

ALTER TABLE events ADD PROJECTION IF NOT EXISTS by_step_match
(
    SELECT org_id, project_id, event_type, event_name, page_path, ui_component_name, ui_action, journey_id,
           journey_step_id, timestamp, event_sequence, received_at, event_id, session_id, user_id,
           user_anonymous_id
    ORDER BY (org_id, project_id, event_type, event_name, page_path, timestamp)
);

ALTER TABLE events MATERIALIZE PROJECTION by_step_match;
