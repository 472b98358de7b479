"""The retention sweep: expired intermediate artefacts are purged; originals stay until the case is deleted.

A case keeps intermediates for ``cases.retention_days`` if set, else for its tenant's effective
``retention.intermediate_days``. Media older than that (by ``created_at``) that the probe finished
(status ``probed``; a failed probe removes its own artefacts, an unfinished one may still be writing)
lose every object under ``cases/{case_id}/media/{media_id}/`` except the original, ``thumb.jpg`` and
``preview.jpg``: the sampled frames and the audio extract. Their ``probes`` document gets
``intermediates_purged_at``, so the next sweep skips them unless the file was probed again since.

Each case swept gets one audit record (``retention.purge`` by ``system:retention``) with the counts,
written after its deletions; if a deletion fails, what was deleted until then is recorded with
outcome ``failed`` and the error propagates. Listing the tenants to sweep is the one unscoped read;
everything else runs in the tenant's or the case's scope.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from aima.access.scope import Scope
from aima.config.service import ConfigService
from aima.storage.audit import AuditLog, Outcome
from aima.storage.documents import DocumentStore
from aima.storage.media import PROBED
from aima.storage.objects import ObjectStore
from aima.storage.relational import Database
from aima.storage.schema import cases, media, utcnow
from aima.storage.scoped import scoped_session, unscoped_session

log = logging.getLogger(__name__)

ACTOR = "system:retention"
ACTION = "retention.purge"
PROBES = "probes"
PURGED_AT = "intermediates_purged_at"
KEPT = frozenset({"original", "thumb.jpg", "preview.jpg"})
"""Names under a media file's prefix that are never intermediates."""
TENANT_LOOKUP = "retention: listing the tenants that have cases, before sweeping each in its own scope"
_BATCH = 500


@dataclass(frozen=True)
class SweepResult:
    """What one sweep purged in one case."""

    tenant_id: str
    case_id: str
    retention_days: int
    media_ids: tuple[str, ...]
    objects_deleted: int
    bytes_freed: int

    @property
    def media_count(self) -> int:
        return len(self.media_ids)


@dataclass(frozen=True)
class _Case:
    tenant_id: str
    case_id: str
    retention_days: int


@dataclass
class _Tally:
    """What a case's sweep has done so far (kept when a deletion fails half-way)."""

    media_ids: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0

    def add(self, media_id: str, objects: int, size: int) -> None:
        if not self.media_ids or self.media_ids[-1] != media_id:  # files are purged one after another
            self.media_ids.append(media_id)
        self.objects += objects
        self.bytes += size


class RetentionSweeper:
    """Purges expired intermediates of every tenant's cases (see module docstring)."""

    def __init__(
        self,
        db: Database,
        objects: ObjectStore,
        documents: DocumentStore,
        config: ConfigService,
        audit: AuditLog,
    ) -> None:
        self._db = db
        self._objects = objects
        self._documents = documents
        self._config = config
        self._audit = audit

    def sweep(self, now: datetime) -> list[SweepResult]:
        """Purge what expired by ``now`` (timezone-aware) in every case; one result per case swept.

        Idempotent: a second sweep with the same ``now`` finds nothing to do.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        results = []
        for case in self._cases():
            result = self._sweep_case(case, now - timedelta(days=case.retention_days))
            if result is not None:
                results.append(result)
        return results

    def _cases(self) -> Iterator[_Case]:
        with unscoped_session(self._db, reason=TENANT_LOOKUP) as session:
            tenant_ids = list(
                session.scalars(select(cases.c.tenant_id).distinct().order_by(cases.c.tenant_id))
            )
        for tenant_id in tenant_ids:
            default = self._config.effective(tenant_id).retention.intermediate_days
            with scoped_session(self._db, Scope.for_tenant(tenant_id, ACTOR)) as session:
                rows = session.execute(
                    select(cases.c.id, cases.c.retention_days).order_by(cases.c.created_at, cases.c.id)
                ).all()
            for case_id, days in rows:
                yield _Case(tenant_id, case_id, days or default)

    def _sweep_case(self, case: _Case, cutoff: datetime) -> SweepResult | None:
        scope = Scope.for_case(case.tenant_id, case.case_id, ACTOR)
        with scoped_session(self._db, scope) as session:
            expired = session.execute(
                select(media.c.id, media.c.object_key)
                .where(media.c.case_id == case.case_id, media.c.status == PROBED, media.c.created_at < cutoff)
                .order_by(media.c.created_at, media.c.id)
            ).all()
        done = self._purged(case, [media_id for media_id, _ in expired])
        tally = _Tally()
        outcome: Outcome = "failed"
        try:
            for media_id, original in expired:
                if media_id not in done:
                    self._purge_media(case, media_id, original, tally)
            outcome = "allowed"
        finally:
            if tally.media_ids:
                self._record(case, cutoff, outcome, tally)
        if not tally.media_ids:
            return None
        return SweepResult(
            case.tenant_id,
            case.case_id,
            case.retention_days,
            tuple(tally.media_ids),
            tally.objects,
            tally.bytes,
        )

    def _purged(self, case: _Case, media_ids: Sequence[str]) -> set[str]:
        """Which of ``media_ids`` had their intermediates purged after they were last probed."""
        done: set[str] = set()
        for start in range(0, len(media_ids), _BATCH):
            docs = self._documents.find(
                PROBES,
                {
                    "tenant_id": case.tenant_id,
                    "case_id": case.case_id,
                    "_id": {"$in": list(media_ids[start : start + _BATCH])},
                },
            )
            done.update(str(doc["_id"]) for doc in docs if _purged_since_probe(doc))
        return done

    def _purge_media(self, case: _Case, media_id: str, original: str, tally: _Tally) -> None:
        """Delete the file's intermediates and mark its probe document, counting into ``tally``."""
        prefix = f"cases/{case.case_id}/media/{media_id}/"
        doomed = [
            info
            for info in self._objects.list(prefix)
            if info.key != original and info.key.removeprefix(prefix) not in KEPT
        ]
        for info in doomed:
            self._objects.delete(info.key)
            tally.add(media_id, 1, info.size)
        marked = self._documents.update_one(
            PROBES,
            {"_id": media_id, "tenant_id": case.tenant_id, "case_id": case.case_id},
            {"$set": {PURGED_AT: utcnow()}},
        )
        if marked:
            tally.add(media_id, 0, 0)

    def _record(self, case: _Case, cutoff: datetime, outcome: Outcome, tally: _Tally) -> None:
        detail: dict[str, Any] = {
            "retention_days": case.retention_days,
            "cutoff": cutoff.isoformat(),
            "media_count": len(tally.media_ids),
            "objects_deleted": tally.objects,
            "bytes_freed": tally.bytes,
        }
        self._audit.record_now(
            tenant_id=case.tenant_id,
            actor=ACTOR,
            action=ACTION,
            outcome=outcome,
            case_id=case.case_id,
            object=f"cases/{case.case_id}",
            detail=detail,
        )
        log.info("retention purged intermediates", extra={"case_id": case.case_id, **detail})


def _purged_since_probe(doc: dict[str, Any]) -> bool:
    purged_at, probed_at = doc.get(PURGED_AT), doc.get("probed_at")
    return isinstance(purged_at, datetime) and (not isinstance(probed_at, datetime) or probed_at <= purged_at)
