"""Query API: GraphQL over HTTP for analysts, dashboards and agents; tenant-scoped by the caller's token."""
