"""Reading the audit log (writing is :meth:`query_api.admin.access.AdminWrite.audit`)."""

from __future__ import annotations

from datetime import datetime

from query_api.admin.repo._rows import Conn, fetch_all
from query_api.admin.types import AuditEntry

__all__ = ["list_audit"]


async def list_audit(conn: Conn, limit: int, before: datetime | None) -> list[AuditEntry]:
    return await fetch_all(
        conn,
        AuditEntry,
        "SELECT id::text AS id, actor_token_id::text AS actor_token_id, actor_user_id::text AS actor_user_id, "
        "actor_label, action, target_type, target_id, project_id::text AS project_id, details, created_at "
        "FROM audit_log WHERE created_at < coalesce(%s::timestamptz, 'infinity') "
        "ORDER BY created_at DESC, id DESC LIMIT %s",
        (before, limit),
    )
