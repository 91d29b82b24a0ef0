"""The audit log of admin actions (table admin_audit_log, migration 0011):
one row per action that changes something, written before the reply; read by
admins (AdminService.ListAuditLog). Nothing here updates or deletes a row,
and the table's trigger refuses it whoever asks."""

from __future__ import annotations

from dataclasses import dataclass

from dragoman.db import Database


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: int
    time_s: float
    admin_user_id: str
    admin_username: str
    action: str
    target: str
    coarse_ip: str


class AuditLog:
    """Appends to and reads admin_audit_log."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(self, admin_user_id: str, admin_username: str, action: str, target: str,
                     coarse_ip: str) -> None:
        async with self._db.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO admin_audit_log (admin_user_id, admin_username, action, target, "
                "coarse_ip) VALUES (%s, %s, %s, %s, %s)",
                (admin_user_id, admin_username, action, target, coarse_ip))

    async def entries(self, limit: int, before_id: int = 0) -> list[Entry]:
        """Newest first; only older than `before_id` when it is set."""
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT entry_id, at, admin_user_id, admin_username, action, target, coarse_ip "
                "FROM admin_audit_log WHERE %s = 0 OR entry_id < %s ORDER BY entry_id DESC LIMIT %s",
                (before_id, before_id, limit))
            return [Entry(i, at.timestamp(), *rest) for i, at, *rest in await cur.fetchall()]
