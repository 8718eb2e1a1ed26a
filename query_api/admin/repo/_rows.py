"""Typed fetch helpers: rows straight into the GraphQL dataclasses, and constraint errors into user errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import class_row

from query_api.errors import Conflict

__all__ = ["Conn", "fetch_all", "fetch_one", "unique_as_conflict"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]


async def fetch_all(conn: Conn, cls: type[T], sql: str, params: Sequence[Any] = ()) -> list[T]:
    async with conn.cursor(row_factory=class_row(cls)) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()


async def fetch_one(conn: Conn, cls: type[T], sql: str, params: Sequence[Any] = ()) -> T | None:
    async with conn.cursor(row_factory=class_row(cls)) as cur:
        await cur.execute(sql, params)
        return await cur.fetchone()


@asynccontextmanager
async def unique_as_conflict(message: str) -> AsyncIterator[None]:
    """A unique violation (always within the caller's own org or project) as a :class:`Conflict`."""
    try:
        yield
    except psycopg.errors.UniqueViolation:
        raise Conflict(message) from None
