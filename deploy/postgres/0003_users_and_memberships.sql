-- Users and memberships, and access tokens tied to a member.
--
-- A user belongs to one org (the same person in two orgs is two rows): identities never cross tenants,
-- so one org can neither see nor edit another's people.  A membership gives the user a role in the org.
-- A token with a user_id acts with the weaker of its own role and its member's current role, and dies
-- with the membership; a token without a user is a service token with its own role.

CREATE OR REPLACE FUNCTION app_role_rank(r text) RETURNS int
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE r WHEN 'viewer' THEN 1 WHEN 'analyst' THEN 2 WHEN 'admin' THEN 3 WHEN 'owner' THEN 4 END $$;

CREATE TABLE IF NOT EXISTS users (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email       text NOT NULL CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, email),
    UNIQUE (org_id, id)
);

CREATE TABLE IF NOT EXISTS memberships (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'analyst', 'viewer')),
    invited_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, user_id),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, invited_by) REFERENCES users (org_id, id) ON DELETE SET NULL (invited_by)
);

-- Composite keys everywhere: a foreign-key check runs without RLS, so a single-column reference would
-- let one org point at (and learn of) another org's row.
ALTER TABLE access_tokens ADD COLUMN IF NOT EXISTS user_id uuid;
ALTER TABLE access_tokens ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
ALTER TABLE access_tokens DROP CONSTRAINT IF EXISTS access_tokens_user_fkey;
ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_user_fkey
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id) ON DELETE CASCADE;
CREATE INDEX IF NOT EXISTS access_tokens_user_idx ON access_tokens (org_id, user_id);

SELECT app_tenant_table('users');
SELECT app_tenant_table('memberships');

-- The owner-only lookup policies of 0002, for the token resolver.
DROP POLICY IF EXISTS resolver_read ON access_tokens;
CREATE POLICY resolver_read ON access_tokens FOR SELECT TO CURRENT_USER USING (true);
DROP POLICY IF EXISTS resolver_touch ON access_tokens;
CREATE POLICY resolver_touch ON access_tokens FOR UPDATE TO CURRENT_USER USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS resolver_read ON memberships;
CREATE POLICY resolver_read ON memberships FOR SELECT TO CURRENT_USER USING (true);

-- The token → org lookup, now with the member and the effective role (one more column than 0001, so the
-- function is recreated; callers select columns by name).
DROP FUNCTION IF EXISTS resolve_access_token(bytea);
CREATE FUNCTION resolve_access_token(p_hash bytea)
    RETURNS TABLE (org_id uuid, token_id uuid, role text, user_id uuid)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    #variable_conflict use_column
    BEGIN
        SELECT t.org_id, t.id,
               CASE WHEN m.role IS NOT NULL AND app_role_rank(m.role) < app_role_rank(t.role) THEN m.role
                    ELSE t.role END,
               t.user_id
          INTO org_id, token_id, role, user_id
          FROM access_tokens t
          LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.user_id
         WHERE t.token_hash = p_hash AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
           AND (t.user_id IS NULL OR m.id IS NOT NULL);
        IF NOT FOUND THEN
            RETURN;
        END IF;
        UPDATE access_tokens SET last_used_at = now()
         WHERE id = token_id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
        RETURN NEXT;
    END $$;
REVOKE ALL ON FUNCTION resolve_access_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION resolve_access_token(bytea) TO productgraph_app;
GRANT EXECUTE ON FUNCTION app_role_rank(text) TO productgraph_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, memberships TO productgraph_app;
