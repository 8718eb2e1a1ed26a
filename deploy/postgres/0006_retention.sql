-- Retention: the one cross-tenant read the retention job needs.  `productgraph retention` connects as the
-- app role (no BYPASSRLS); this SECURITY DEFINER function returns only (org, project, retention_days) of
-- every project, nothing else, with the defaults of project_settings_defaults() merged in.  It reads
-- projects through the owner-only `resolver_read` policy of 0002, like the credential resolvers.
CREATE OR REPLACE FUNCTION retention_policies()
    RETURNS TABLE (org_id uuid, project_id uuid, retention_days int)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT p.org_id, p.id, ((project_settings_defaults() || p.settings) ->> 'retention_days')::int
        FROM projects p
    $$;

REVOKE ALL ON FUNCTION retention_policies() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retention_policies() TO productgraph_app;
