-- Per-project retention (projects.settings.retention_days, 1..3650) is enforced by `productgraph retention`,
-- which deletes each project's rows older than its own retention.  The table TTL stays as the global upper
-- bound and is raised from 365 days to the largest retention a project may choose, so that a project
-- keeping data for 10 years is not cut at one year.  Raising a TTL drops nothing, so the parts are not
-- rewritten for it (materialize_ttl_after_modify = 0).
ALTER TABLE events MODIFY TTL toDateTime(timestamp) + INTERVAL 3650 DAY SETTINGS materialize_ttl_after_modify = 0;

ALTER TABLE sessions MODIFY TTL toDateTime(ended_at) + INTERVAL 3650 DAY SETTINGS materialize_ttl_after_modify = 0;
