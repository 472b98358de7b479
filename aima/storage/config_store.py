"""Versions of runtime configuration sections in ``config_entries`` (for `aima.config.service`).

A level is a tenant id, or None for the global defaults. Versions of one section at one level count
up from 1; appending takes a PostgreSQL advisory lock on (level, section), as the unique constraint
cannot guard the global level (NULL tenant ids never conflict). SQLite has a single writer anyway.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select
from sqlalchemy.orm import Session

from aima.access.scope import Scope
from aima.storage.relational import Database, transaction_lock
from aima.storage.schema import config_entries, utcnow
from aima.storage.scoped import scoped_session

Stored = tuple[dict[str, Any], int]  # value, version


class ConfigStore:
    """Read and append configuration versions (see module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def transaction(self, scope: Scope) -> AbstractContextManager[Session]:
        """A scoped transaction, so a version and its audit record commit together."""
        return scoped_session(self._db, scope)

    def newest(self, tenant_id: str | None, key: str | None = None) -> dict[str, Stored]:
        """Section -> (value, version) of the newest version of each section (or just ``key``) at a level."""
        conditions = [_level(tenant_id)]
        if key is not None:
            conditions.append(config_entries.c.key == key)
        latest = (
            select(config_entries.c.key, func.max(config_entries.c.version).label("version"))
            .where(*conditions)
            .group_by(config_entries.c.key)
            .subquery()
        )
        query = (
            select(config_entries.c.key, config_entries.c.value, config_entries.c.version)
            .join(
                latest,
                and_(config_entries.c.key == latest.c.key, config_entries.c.version == latest.c.version),
            )
            .where(*conditions)
        )
        with self._db.session() as session:
            return {row.key: (row.value, row.version) for row in session.execute(query)}

    def append(
        self, session: Session, tenant_id: str | None, key: str, value: dict[str, Any], actor: str
    ) -> int:
        """Insert the next version of ``key`` at the level in ``session``'s transaction; returns it."""
        transaction_lock(session, f"aima.config:{tenant_id or ''}:{key}")
        current = session.scalar(
            select(func.max(config_entries.c.version)).where(_level(tenant_id), config_entries.c.key == key)
        )
        version = (current or 0) + 1
        session.execute(
            insert(config_entries).values(
                tenant_id=tenant_id,
                key=key,
                version=version,
                value=value,
                changed_by=actor,
                changed_at=utcnow(),
            )
        )
        return version

    def history(self, tenant_id: str | None, key: str) -> list[dict[str, Any]]:
        """Every version of ``key`` at the level, newest first."""
        query = (
            select(
                config_entries.c.key,
                config_entries.c.tenant_id,
                config_entries.c.version,
                config_entries.c.value,
                config_entries.c.changed_by,
                config_entries.c.changed_at,
            )
            .where(_level(tenant_id), config_entries.c.key == key)
            .order_by(config_entries.c.version.desc())
        )
        with self._db.session() as session:
            return [dict(row) for row in session.execute(query).mappings()]


def _level(tenant_id: str | None) -> ColumnElement[bool]:
    column = config_entries.c.tenant_id
    return column.is_(None) if tenant_id is None else column == tenant_id
