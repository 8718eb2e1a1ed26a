"""Errors a GraphQL caller may see, and the mask for everything else.

Only :class:`UserError` (and ``ValueError``, the validation errors of resolvers and of
``schemas.matchers``) reach the caller with their message; any other exception (a database error, a
bug) becomes "Unexpected error." so that no constraint name, SQL fragment or other tenant's detail leaks.
"""

from __future__ import annotations

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

__all__ = ["Conflict", "Forbidden", "InvalidInput", "NotFound", "UserError", "is_expected", "mask_errors"]


class UserError(Exception):
    """An error whose message is meant for the caller."""


class NotFound(UserError):
    """An id the caller's org does not have: said the same way whether it exists elsewhere or not."""


class Forbidden(UserError):
    """The caller's role does not allow this; decided before any lookup, so it reveals nothing."""


class InvalidInput(UserError, ValueError):
    """An argument that cannot be used, named in the message."""


class Conflict(UserError):
    """A name or slug already taken inside the caller's own org or project."""


def is_expected(error: GraphQLError) -> bool:
    """A caller's mistake (parse/validation errors, user errors, ``ValueError``), not a fault of ours."""
    original = error.original_error
    return original is None or isinstance(original, UserError | ValueError)


def mask_errors() -> MaskErrors:
    return MaskErrors(should_mask_error=lambda error: not is_expected(error))
