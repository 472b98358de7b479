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

**Leftovers.** Before that, every sweep removes what interrupted work left behind and nothing else
would ever remove (`RetentionSweeper.sweep_leftovers`), each kind once older than its threshold in the
``retention`` section of the runtime configuration:

* resumable upload sessions begun more than ``upload_session_hours`` ago (default 7 days, at least
  one; the tenant's value): the session document in ``uploads``, its open multipart upload, its tail
  segments and an object assembled but never registered (a completed session only loses its
  document). A session is ended as ``functions.ingest`` ends one, by deleting its document on the
  version it had (so a request changing it meanwhile wins and the session stays), and never while a
  request holds a live claim to complete it;
* with a local object store, files under ``.tmp/`` not written for ``temporary_file_hours`` (default
  24): objects and sidecars whose writer was killed mid-write (an active write keeps its file's time
  fresh), and multipart folders under ``.uploads/`` older than the global ``upload_session_hours``
  that no session refers to (on S3, an ``AbortIncompleteMultipartUpload`` lifecycle rule does that);
* ``aima-probe-*`` working folders of a killed probe in the probe's work directory (by default the
  system temporary folder, where the probe makes them) whose newest entry is older than
  ``probe_folder_hours`` (default 48, at least 12: far above the longest a probe may run) and that no
  process has open: a folder holding some process's working directory or an open file (``/proc``;
  where there is no ``/proc`` the age alone decides) is kept however old. Only folders on this host
  are seen: run the sweep where the probe runs, or give the probe a work directory on a volume it
  shares with the sweep.

Ages are measured against the clock at the time of the sweep (never later than the request's
``now``), so a request dated in the future cannot make live work look abandoned. Each removed session
is audit-logged (``retention.leftovers``) in its tenant's chain with its case; files belong to no
tenant and go to the ``system`` chain, one record per kind and sweep with the names, count and bytes.
As for purges, a failure records what was removed until then with outcome ``failed`` and propagates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select

from aima.access.scope import Scope
from aima.config.schema import Retention
from aima.config.service import ConfigService
from aima.storage.audit import SYSTEM_CHAIN, AuditLog, Outcome
from aima.storage.documents import DocumentStore
from aima.storage.media import PROBED, MediaRepository
from aima.storage.objects import ObjectNotFound, ObjectStore
from aima.storage.objects_local import LocalObjectStore
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
LEFTOVERS = "retention.leftovers"
UPLOADS = "uploads"
"""The resumable upload sessions' collection (``functions.ingest.core.UPLOADS``)."""
PROBE_PREFIX = "aima-probe-"
"""How the probe names its working folders (``functions.probe.core``)."""
COMPLETING, COMPLETED = "completing", "completed"
"""Session states (``functions.ingest.core``): one request completes it under a lease; completed."""
LeftoverKind = Literal["upload-session", "temporary-file", "probe-folder"]


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
class Leftover:
    """One leftover a sweep removed: its kind, name (upload id, path in the object store's root, or
    folder name), size, and for a session its tenant and case."""

    kind: LeftoverKind
    name: str
    bytes: int
    tenant_id: str | None = None
    case_id: str | None = None


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
        *,
        probe_workdir: Path | None = None,
    ) -> None:
        """``probe_workdir``: where the probe makes its working folders (default: the system
        temporary folder, as the probe's own default)."""
        self._db = db
        self._objects = objects
        self._documents = documents
        self._config = config
        self._audit = audit
        self._probe_workdir = Path(probe_workdir or tempfile.gettempdir())

    def sweep(self, now: datetime) -> list[SweepResult]:
        """Remove leftovers (`sweep_leftovers`), then purge what expired by ``now`` (timezone-aware)
        in every case; one result per case purged.

        Idempotent: a second sweep with the same ``now`` finds nothing to do.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.sweep_leftovers(now)
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

    # --- leftovers (see module docstring) -----------------------------------------------------

    def sweep_leftovers(self, now: datetime) -> list[Leftover]:
        """Remove abandoned upload sessions, stale temporary files of the local object store and
        stale probe folders no process uses; what was removed, audited."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        reference = min(now, utcnow())
        defaults = self._global_retention()
        removed = self._expire_uploads(reference)
        store = self._objects
        if isinstance(store, LocalObjectStore):
            removed += self._remove_files(
                "temporary-file",
                defaults.temporary_file_hours,
                lambda: self._local_leftovers(store, reference, defaults),
            )
        probe_cutoff = reference.timestamp() - defaults.probe_folder_hours * 3600
        removed += self._remove_files(
            "probe-folder",
            defaults.probe_folder_hours,
            lambda: remove_probe_folders(self._probe_workdir, probe_cutoff),
        )
        return removed

    def _global_retention(self) -> Retention:
        """The global ``retention`` section: files left behind belong to no tenant."""
        try:
            return Retention.model_validate(self._config.get("retention", None)[0])
        except ValidationError:  # stored under an older schema
            return Retention()

    def _expire_uploads(self, reference: datetime) -> list[Leftover]:
        oldest = self._documents.find(
            UPLOADS, {"created_at": {"$lt": reference - timedelta(hours=1)}}, sort=[("created_at", 1)]
        )
        hours: dict[str, int] = {}
        removed = []
        for doc in oldest:
            tenant_id = str(doc["tenant_id"])
            if tenant_id not in hours:
                hours[tenant_id] = self._config.effective(tenant_id).retention.upload_session_hours
            if doc["created_at"] >= reference - timedelta(hours=hours[tenant_id]) or _busy(doc):
                continue
            leftover = self._expire_upload(doc, hours[tenant_id])
            if leftover is not None:
                removed.append(leftover)
        return removed

    def _expire_upload(self, doc: dict[str, Any], hours: int) -> Leftover | None:
        """End one session as ingest's abort does; None if a request changed it meanwhile."""
        tenant_id, case_id, upload_id = str(doc["tenant_id"]), str(doc["case_id"]), str(doc["_id"])
        received = self._received(doc)
        ids = {"_id": upload_id, "tenant_id": tenant_id, "case_id": case_id}
        if "version" in doc:
            ids["version"] = doc["version"]
        if not self._documents.delete_many(UPLOADS, ids):
            return None  # changed meanwhile: someone is still using it
        leftover = Leftover("upload-session", upload_id, received, tenant_id, case_id)
        outcome: Outcome = "failed"
        try:
            if doc.get("state") != COMPLETED:
                self._drop_session(doc)
            outcome = "allowed"
        finally:
            detail = {
                "kind": leftover.kind,
                "created_at": doc["created_at"].isoformat(),
                "bytes": received,
                "older_than_hours": hours,
                "state": doc.get("state"),
            }
            self._audit.record_now(
                tenant_id=tenant_id,
                actor=ACTOR,
                action=LEFTOVERS,
                outcome=outcome,
                case_id=case_id,
                object=f"cases/{case_id}/uploads/{upload_id}",
                detail=detail,
            )
            log.info("retention ended an abandoned upload", extra={"upload_id": upload_id, **detail})
        return leftover

    def _received(self, doc: dict[str, Any]) -> int:
        """Bytes the session had received."""
        if isinstance(doc.get("offset"), int):
            return int(doc["offset"])
        if doc.get("multipart_id") is None:
            return 0
        try:
            return sum(part.size for part in self._objects.list_parts(doc["object_key"], doc["multipart_id"]))
        except ObjectNotFound:
            return 0

    def _drop_session(self, doc: dict[str, Any]) -> None:
        """Its multipart upload, its tail segments and an object assembled but never registered."""
        key = str(doc["object_key"])
        if doc.get("multipart_id") is not None:
            self._objects.abort_upload(key, doc["multipart_id"])
        self._objects.delete_prefix(f"cases/{doc['case_id']}/uploads/{doc['_id']}/")
        scope = Scope.for_case(str(doc["tenant_id"]), str(doc["case_id"]), ACTOR)
        if MediaRepository(self._db).get(scope, str(doc["media_id"])) is None:
            self._objects.delete(key)

    def _local_leftovers(
        self, store: LocalObjectStore, reference: datetime, defaults: Retention
    ) -> list[tuple[str, int]]:
        live = {
            str(doc["multipart_id"]) for doc in self._documents.find(UPLOADS, {"multipart_id": {"$ne": None}})
        }
        now = reference.timestamp()
        return store.remove_leftovers(
            written_before=now - defaults.temporary_file_hours * 3600,
            uploads_before=now - defaults.upload_session_hours * 3600,
            keep_uploads=live,
        )

    def _remove_files(
        self, kind: LeftoverKind, hours: int, remove: Callable[[], list[tuple[str, int]]]
    ) -> list[Leftover]:
        """Run ``remove`` and record what it removed in the system chain (``failed`` if it raised)."""
        try:
            removed = remove()
        except _Partial as partial:
            self._record_files(kind, hours, "failed", partial.removed)
            raise partial.error from None
        except Exception:
            self._record_files(kind, hours, "failed", [])
            raise
        if removed:
            self._record_files(kind, hours, "allowed", removed)
        return [Leftover(kind, name, size) for name, size in removed]

    def _record_files(
        self, kind: LeftoverKind, hours: int, outcome: Outcome, removed: list[tuple[str, int]]
    ) -> None:
        detail: dict[str, Any] = {
            "kind": kind,
            "count": len(removed),
            "bytes": sum(size for _, size in removed),
            "older_than_hours": hours,
            "names": [name for name, _ in removed[:_MAX_NAMES]],
        }
        self._audit.record_now(
            tenant_id=SYSTEM_CHAIN, actor=ACTOR, action=LEFTOVERS, outcome=outcome, detail=detail
        )
        log.info("retention removed leftovers", extra=detail)


_MAX_NAMES = 100
"""Names listed in one audit record (the count and bytes cover all)."""


class _Partial(Exception):
    """A removal failed after removing ``removed``."""

    def __init__(self, removed: list[tuple[str, int]], error: BaseException) -> None:
        super().__init__(str(error))
        self.removed = removed
        self.error = error


def _busy(doc: dict[str, Any]) -> bool:
    """A request holds a live claim to complete the session."""
    return bool(doc.get("state") == COMPLETING and float(doc.get("claim_until") or 0) > time.time())


def remove_probe_folders(workdir: Path, before: float) -> list[tuple[str, int]]:
    """Remove the probe's working folders (``aima-probe-*``) directly in ``workdir`` whose newest
    entry was changed before ``before`` (a Unix time) and that no process uses; returns the name and
    bytes of each removed. The probe may call it on its own work directory at start-up too."""
    try:
        candidates = sorted(p for p in workdir.iterdir() if p.name.startswith(PROBE_PREFIX))
    except FileNotFoundError:
        return []
    stale = [p for p in candidates if _is_folder(p) and _newest_change(p) < before]
    if not stale:
        return []
    used = _paths_in_use(workdir)
    removed: list[tuple[str, int]] = []
    try:
        for folder in stale:
            real = folder.resolve()
            if used is not None and any(path == real or real in path.parents for path in used):
                continue
            size = _size(folder)
            shutil.rmtree(folder)
            removed.append((folder.name, size))
    except OSError as exc:
        raise _Partial(removed, exc) from exc
    return removed


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _newest_change(folder: Path) -> float:
    """The newest modification time of the folder and everything in it (symlinks not followed)."""
    newest = folder.lstat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def _paths_in_use(under: Path) -> list[Path] | None:
    """Every working directory and open file of a visible process below ``under``; None without
    ``/proc`` (nothing can be known)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    prefix = str(under.resolve()) + os.sep
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        links = [entry / "cwd"]
        with contextlib.suppress(OSError):  # gone, or not ours to see
            links += list((entry / "fd").iterdir())
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target.startswith(prefix):
                found.append(Path(target.removesuffix(" (deleted)")))
    return found


def _purged_since_probe(doc: dict[str, Any]) -> bool:
    purged_at, probed_at = doc.get(PURGED_AT), doc.get("probed_at")
    return isinstance(purged_at, datetime) and (not isinstance(probed_at, datetime) or probed_at <= purged_at)
