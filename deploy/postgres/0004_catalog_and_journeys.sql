-- The seed's product catalog (capabilities → features) and journeys with ordered steps.
-- Step matchers are validated by the app (schemas/matchers.py) and stored normalised; the stream
-- processors read active journeys per (org, project) through the tenant transaction like everyone else.

CREATE TABLE IF NOT EXISTS capabilities (
    id            uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id        uuid NOT NULL,
    project_id    uuid NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    display_order int NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS capabilities_project_idx ON capabilities (org_id, project_id);

CREATE TABLE IF NOT EXISTS features (
    id            uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id        uuid NOT NULL,
    project_id    uuid NOT NULL,
    capability_id uuid NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    admin_path    text NOT NULL DEFAULT '' CHECK (length(admin_path) <= 500),
    documentation jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(documentation) = 'array'),
    display_order int NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (capability_id, name),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, capability_id) REFERENCES capabilities (org_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS features_project_idx ON features (org_id, project_id);

CREATE TABLE IF NOT EXISTS journeys (
    id              uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id          uuid NOT NULL,
    project_id      uuid NOT NULL,
    feature_id      uuid,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    timeout_minutes int NOT NULL DEFAULT 30 CHECK (timeout_minutes BETWEEN 1 AND 1440),
    is_active       boolean NOT NULL DEFAULT true,
    version         int NOT NULL DEFAULT 1,  -- bumped on every change, so readers can cache by it
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, feature_id) REFERENCES features (org_id, id) ON DELETE SET NULL (feature_id)
);
CREATE INDEX IF NOT EXISTS journeys_project_idx ON journeys (org_id, project_id, is_active);
CREATE INDEX IF NOT EXISTS journeys_feature_idx ON journeys (org_id, feature_id);

CREATE TABLE IF NOT EXISTS journey_steps (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    org_id      uuid NOT NULL,
    journey_id  uuid NOT NULL,
    position    int NOT NULL CHECK (position BETWEEN 1 AND 100),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    matcher     jsonb NOT NULL CHECK (jsonb_typeof(matcher) = 'object'),
    is_required boolean NOT NULL DEFAULT true,
    UNIQUE (journey_id, position),
    FOREIGN KEY (org_id, journey_id) REFERENCES journeys (org_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS journey_steps_journey_idx ON journey_steps (org_id, journey_id);

SELECT app_tenant_table('capabilities');
SELECT app_tenant_table('features');
SELECT app_tenant_table('journeys');
SELECT app_tenant_table('journey_steps');
GRANT SELECT, INSERT, UPDATE, DELETE ON capabilities, features, journeys, journey_steps TO productgraph_app;
