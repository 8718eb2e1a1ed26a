"""Journey suggestions from frequent paths (:mod:`.suggest`, pure) over GraphQL (:mod:`.graphql`)."""

from query_api.suggestions.graphql import SuggestionsQuery, journey_suggestions
from query_api.suggestions.suggest import JourneySuggestion, suggest_journeys

# Merged into the GraphQL root Query by query_api.schema.
QUERY = SuggestionsQuery

__all__ = ["QUERY", "JourneySuggestion", "journey_suggestions", "suggest_journeys"]
