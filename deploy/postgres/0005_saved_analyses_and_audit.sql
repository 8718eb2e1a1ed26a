-- Saved funnels and cohorts (definitions as validated jsonb, computed in ClickHouse by the query API),
-- and the audit log of every admin mutation.  The app may add audit rows and read them, never change them.

CREATE TABLE IF NOT EXISTS saved_funnels (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id      uuid NOT NULL,
    project_id  uuid NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    definition  jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, created_by) REFERENCES users (org_id, id) ON DELETE SET NULL (created_by)
);
CREATE INDEX IF NOT EXISTS saved_funnels_project_idx ON saved_funnels (org_id, project_id);

CREATE TABLE IF NOT EXISTS cohorts (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id      uuid NOT NULL,
    project_id  uuid NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    definition  jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, created_by) REFERENCES users (org_id, id) ON DELETE SET NULL (created_by)
);
CREATE INDEX IF NOT EXISTS cohorts_project_idx ON cohorts (org_id, project_id);

-- No foreign keys to the actor or target: the record outlives both (a removed member's actions stay).
CREATE TABLE IF NOT EXISTS audit_log (
    id              uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    actor_token_id  uuid,
    actor_user_id   uuid,
    actor_label     text NOT NULL,
    action          text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type     text NOT NULL,
    target_id       text,
    project_id      uuid,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS audit_log_org_time_idx ON audit_log (org_id, created_at DESC, id DESC);

SELECT app_tenant_table('saved_funnels');
SELECT app_tenant_table('cohorts');
SELECT app_tenant_table('audit_log');
GRANT SELECT, INSERT, UPDATE, DELETE ON saved_funnels, cohorts TO productgraph_app;
GRANT SELECT, INSERT ON audit_log TO productgraph_app;

-- Backstop: no table in this schema may be left outside the tenant policy.
DO $$
DECLARE bad text;
BEGIN
    SELECT string_agg(c.relname, ', ') INTO bad
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'
       AND NOT (c.relrowsecurity AND c.relforcerowsecurity
                AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation'));
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'tables without forced tenant RLS: %', bad;
    END IF;
END $$;
