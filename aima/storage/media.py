"""The media repository: rows of the ``media`` table, always read and written inside a `Scope`.

Every call opens a `scoped_session`, so a caller can only see and change media of the scope's
tenant and cases. Rows come out as `aima.domain.Media` models (``metadata`` is a dict or None). A
file's status goes ``stored`` (uploaded) -> ``probed`` or ``failed`` (with ``failure_reason``).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.orm import Session

from aima.access.scope import Scope
from aima.domain import Media, MediaStatus
from aima.storage.audit import AuditHook
from aima.storage.outbox import Outbox
from aima.storage.relational import Database, insert_new
from aima.storage.schema import media, utcnow
from aima.storage.scoped import scoped_session
from events.envelope import CloudEvent

STORED, PROBED, FAILED = MediaStatus.STORED.value, MediaStatus.PROBED.value, MediaStatus.FAILED.value


class MediaRepository:
    """Media rows of one database, confined to the caller's scope."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.outbox = Outbox(db)
        """Where the events announcing media go (a caller announcing a request at its end, too)."""

    def add(
        self,
        scope: Scope,
        *,
        case_id: str,
        media_id: str,
        sha256: str,
        size: int,
        content_type: str,
        kind: str | None,
        filename: str | None,
        object_key: str,
        audit: AuditHook | None = None,
        events: Sequence[CloudEvent] = (),
    ) -> tuple[Media, bool]:
        """Insert a row; if the case already holds a file with this sha256, return that file and False.

        For a new row, in the same transaction, ``audit`` writes its audit record and ``events`` are
        the events announcing it, written to the outbox: the row, its record and its events
        commit together or not at all.
        """
        values = {
            "id": media_id,
            "tenant_id": scope.tenant_id,
            "case_id": case_id,
            "sha256": sha256,
            "size": size,
            "content_type": content_type,
            "kind": kind,
            "filename": filename,
            "object_key": object_key,
            "status": STORED,
            "created_at": utcnow(),
        }
        with scoped_session(self._db, scope) as session:
            statement = insert_new(session, media, ["case_id", "sha256"]).values(values)
            created = session.execute(statement.returning(media.c.id)).first() is not None
            same = select(media).where(media.c.case_id == case_id, media.c.sha256 == sha256)
            found = _media(session.execute(same).one()._mapping)
            if created and audit is not None:
                audit(session)
            if created:
                self.outbox.add(session, events)
            return found, created

    def get(self, scope: Scope, media_id: str) -> Media | None:
        """The file, or None if it does not exist within the scope."""
        with scoped_session(self._db, scope) as session:
            row = session.execute(select(media).where(media.c.id == media_id)).first()
            return _media(row._mapping) if row is not None else None

    def many(self, scope: Scope, media_ids: Iterable[str]) -> dict[str, Media]:
        """The files among ``media_ids`` that exist within the scope, by id (one query)."""
        wanted = builtins.list(dict.fromkeys(media_ids))
        if not wanted:
            return {}
        with scoped_session(self._db, scope, readonly=True) as session:
            rows = session.execute(select(media).where(media.c.id.in_(wanted)))
            return {str(row.id): _media(row._mapping) for row in rows}

    def list(self, scope: Scope, case_id: str) -> builtins.list[Media]:
        """The case's media, oldest first."""
        with scoped_session(self._db, scope) as session:
            rows = session.execute(
                select(media).where(media.c.case_id == case_id).order_by(media.c.created_at, media.c.id)
            )
            return [_media(row._mapping) for row in rows]

    def set_probed(self, scope: Scope, media_id: str, *, kind: str, metadata: dict[str, Any]) -> bool:
        """Record the probe's result; False if the row no longer exists (e.g. its case was deleted)."""
        values = {"status": PROBED, "kind": kind, "metadata": metadata, "failure_reason": None}
        with scoped_session(self._db, scope) as session:
            return _update(session, media_id, values)

    def mark_failed(self, scope: Scope, media_id: str, reason: str) -> bool:
        """Mark the file failed with a reason for the reviewer; False if the row no longer exists."""
        with scoped_session(self._db, scope) as session:
            return _update(session, media_id, {"status": FAILED, "failure_reason": reason})

    def delete(self, scope: Scope, media_id: str) -> bool:
        """Remove the row (its objects are the caller's business); False if there was none."""
        with scoped_session(self._db, scope) as session:
            deleted = session.execute(media.delete().where(media.c.id == media_id).returning(media.c.id))
            return deleted.first() is not None


def _update(session: Session, media_id: str, values: dict[str, Any]) -> bool:
    updated = session.execute(
        media.update().where(media.c.id == media_id).values(values).returning(media.c.id)
    )
    return updated.first() is not None


def _media(row: RowMapping) -> Media:
    return Media.model_validate({column.name: row[column] for column in media.columns})
