-- Project settings with defaults, API-key rotation with overlap, and the one helper that puts a table
-- under the tenant policy.  Later migrations call app_tenant_table() for every table they create.

-- Applies the tenant policy of 0001 to a table with an org_id column.  Owned by the migrator, never granted
-- to the app role (it could otherwise drop its own isolation).
CREATE OR REPLACE FUNCTION app_tenant_table(t regclass) RETURNS void
    LANGUAGE plpgsql
    AS $$
    BEGIN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (org_id = app_current_org()) '
                       'WITH CHECK (org_id = app_current_org())', t);
    END $$;
REVOKE ALL ON FUNCTION app_tenant_table(regclass) FROM PUBLIC;

-- projects.settings stays the jsonb the gateway reads (KeyInfo.settings); it stores only what a project
-- overrides, and readers merge it over these defaults.  The one place the defaults live.
-- rate_limit_per_s: events/s, 0 = unlimited; rate_limit_burst (optional, no default here: the gateway's
-- own default applies) is the token-bucket size in events.
CREATE OR REPLACE FUNCTION project_settings_defaults() RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT '{"session_timeout_minutes": 30, "dedup_window_s": 86400, "rate_limit_per_s": 10000,
                   "retention_days": 365, "cors_origins": ["*"]}'::jsonb $$;

-- Keys and types are checked by the app with readable messages; this is the backstop for any other writer.
CREATE OR REPLACE FUNCTION project_settings_valid(s jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT jsonb_typeof(s) = 'object'
           AND NOT EXISTS (
               SELECT 1 FROM jsonb_object_keys(s) k
               WHERE k NOT IN ('session_timeout_minutes', 'dedup_window_s', 'rate_limit_per_s', 'rate_limit_burst',
                               'retention_days', 'cors_origins'))
           AND (NOT s ? 'session_timeout_minutes' OR (jsonb_typeof(s -> 'session_timeout_minutes') = 'number'
                AND (s ->> 'session_timeout_minutes')::numeric BETWEEN 1 AND 1440
                AND (s ->> 'session_timeout_minutes')::numeric % 1 = 0))
           AND (NOT s ? 'dedup_window_s' OR (jsonb_typeof(s -> 'dedup_window_s') = 'number'
                AND (s ->> 'dedup_window_s')::numeric BETWEEN 0 AND 604800
                AND (s ->> 'dedup_window_s')::numeric % 1 = 0))
           AND (NOT s ? 'rate_limit_per_s' OR (jsonb_typeof(s -> 'rate_limit_per_s') = 'number'
                AND (s ->> 'rate_limit_per_s')::numeric BETWEEN 0 AND 1000000
                AND (s ->> 'rate_limit_per_s')::numeric % 1 = 0))
           AND (NOT s ? 'rate_limit_burst' OR (jsonb_typeof(s -> 'rate_limit_burst') = 'number'
                AND (s ->> 'rate_limit_burst')::numeric BETWEEN 1 AND 10000000
                AND (s ->> 'rate_limit_burst')::numeric % 1 = 0))
           AND (NOT s ? 'retention_days' OR (jsonb_typeof(s -> 'retention_days') = 'number'
                AND (s ->> 'retention_days')::numeric BETWEEN 1 AND 3650
                AND (s ->> 'retention_days')::numeric % 1 = 0))
           AND (NOT s ? 'cors_origins' OR (jsonb_typeof(s -> 'cors_origins') = 'array'
                AND jsonb_array_length(s -> 'cors_origins') <= 100
                AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(s -> 'cors_origins') o
                                WHERE jsonb_typeof(o) <> 'string' OR length(o #>> '{}') NOT BETWEEN 1 AND 255)))
    $$;

UPDATE projects SET settings = '{}'::jsonb WHERE NOT project_settings_valid(settings);
ALTER TABLE projects DROP CONSTRAINT IF EXISTS projects_settings_valid;
ALTER TABLE projects ADD CONSTRAINT projects_settings_valid CHECK (project_settings_valid(settings));

-- Rotation: the new key is a new row; the old one keeps working until expires_at (now + overlap).
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS rotated_from uuid;
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_rotated_from_fkey;
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_org_id_id_key;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_rotated_from_fkey
    FOREIGN KEY (org_id, rotated_from) REFERENCES api_keys (org_id, id) ON DELETE SET NULL (rotated_from);
CREATE INDEX IF NOT EXISTS api_keys_project_idx ON api_keys (org_id, project_id);

-- The resolver functions are SECURITY DEFINER, owned by the migrating role.  FORCE RLS binds that owner
-- too unless it is a superuser or has BYPASSRLS (managed Postgres often gives neither), so the owner, and
-- only the owner, gets the narrow read/touch it needs for credential lookups.
DROP POLICY IF EXISTS resolver_read ON projects;
CREATE POLICY resolver_read ON projects FOR SELECT TO CURRENT_USER USING (true);
DROP POLICY IF EXISTS resolver_read ON api_keys;
CREATE POLICY resolver_read ON api_keys FOR SELECT TO CURRENT_USER USING (true);
DROP POLICY IF EXISTS resolver_touch ON api_keys;
CREATE POLICY resolver_touch ON api_keys FOR UPDATE TO CURRENT_USER USING (true) WITH CHECK (true);

-- Same columns as in 0001 (the gateway selects them by name).  Honours expiry, merges the setting
-- defaults, and records last use at most once a minute per key so the hot path rarely writes.
CREATE OR REPLACE FUNCTION resolve_api_key(p_hash bytea)
    RETURNS TABLE (project_id uuid, org_id uuid, project_slug text, settings jsonb)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    #variable_conflict use_column
    DECLARE k_id uuid;
    BEGIN
        SELECT k.id, p.id, p.org_id, p.slug, project_settings_defaults() || p.settings
          INTO k_id, project_id, org_id, project_slug, settings
          FROM api_keys k JOIN projects p ON p.id = k.project_id AND p.org_id = k.org_id
         WHERE k.key_hash = p_hash AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now());
        IF NOT FOUND THEN
            RETURN;
        END IF;
        UPDATE api_keys SET last_used_at = now()
         WHERE id = k_id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
        RETURN NEXT;
    END $$;
REVOKE ALL ON FUNCTION resolve_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION resolve_api_key(bytea) TO productgraph_app;
GRANT EXECUTE ON FUNCTION project_settings_defaults() TO productgraph_app;
GRANT EXECUTE ON FUNCTION project_settings_valid(jsonb) TO productgraph_app;
