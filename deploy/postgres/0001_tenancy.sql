-- Tenancy core: organizations, projects, API keys, query-API access tokens; row-level security on all.
-- Applied by `productgraph migrate` as the schema owner.  The application role (productgraph_app) owns
-- nothing, has no BYPASSRLS, and sees only the org set with set_config('app.org_id', ..., true).

CREATE OR REPLACE FUNCTION app_current_org() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.org_id', true), '')::uuid $$;

CREATE TABLE IF NOT EXISTS organizations (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,99}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS projects (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,99}$'),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, slug),
    UNIQUE (org_id, id)
);

CREATE TABLE IF NOT EXISTS api_keys (
    id           uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id   uuid NOT NULL,
    name         text NOT NULL DEFAULT 'default',
    key_hash     bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS access_tokens (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        text NOT NULL DEFAULT 'default',
    role        text NOT NULL DEFAULT 'admin' CHECK (role IN ('owner', 'admin', 'analyst', 'viewer')),
    token_hash  bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON organizations;
CREATE POLICY tenant_isolation ON organizations
    USING (id = app_current_org()) WITH CHECK (id = app_current_org());

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projects', 'api_keys', 'access_tokens'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (org_id = app_current_org()) '
                       'WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END $$;

-- The narrow cross-tenant paths: a hashed credential in, only what is needed out.
CREATE OR REPLACE FUNCTION resolve_api_key(p_hash bytea)
    RETURNS TABLE (project_id uuid, org_id uuid, project_slug text, settings jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT p.id, p.org_id, p.slug, p.settings
        FROM api_keys k JOIN projects p ON p.id = k.project_id AND p.org_id = k.org_id
        WHERE k.key_hash = p_hash AND k.revoked_at IS NULL
    $$;

CREATE OR REPLACE FUNCTION resolve_access_token(p_hash bytea)
    RETURNS TABLE (org_id uuid, token_id uuid, role text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT t.org_id, t.id, t.role FROM access_tokens t
        WHERE t.token_hash = p_hash AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
    $$;

REVOKE ALL ON FUNCTION resolve_api_key(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION resolve_access_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION resolve_api_key(bytea) TO productgraph_app;
GRANT EXECUTE ON FUNCTION resolve_access_token(bytea) TO productgraph_app;
GRANT EXECUTE ON FUNCTION app_current_org() TO productgraph_app;
GRANT USAGE ON SCHEMA public TO productgraph_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON organizations, projects, api_keys, access_tokens TO productgraph_app;
