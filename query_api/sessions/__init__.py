"""Session search and replay: filters and answers (:mod:`.model`), the state diff of rule 13 (:mod:`.diff`),
opaque cursors (:mod:`.cursor`), SQL and row mapping (:mod:`.sql`), the plain async functions the MCP tools
call (:mod:`.service`) and the GraphQL fields ``sessions`` and ``sessionReplay`` (:mod:`.graphql`)."""

from query_api.sessions.diff import PathChange, StateDiff, diff_states, diff_values
from query_api.sessions.graphql import SessionQuery
from query_api.sessions.model import SearchPage, SegmentSummary, SessionFilter
from query_api.sessions.service import (
    ReplaySelection,
    SessionReplay,
    replay_page_and_timeline,
    replay_timeline,
    search_sessions,
    select_replay,
    session_replay,
)

# Merged into the GraphQL root Query by query_api.schema.
QUERY = SessionQuery

__all__ = [
    "QUERY",
    "PathChange",
    "ReplaySelection",
    "SearchPage",
    "SegmentSummary",
    "SessionFilter",
    "SessionReplay",
    "StateDiff",
    "diff_states",
    "diff_values",
    "replay_page_and_timeline",
    "replay_timeline",
    "search_sessions",
    "select_replay",
    "session_replay",
]
