"""Group commit for the audit records the gateway writes outside a change's transaction (reads,
exports, denials, failed authentications, sign-ins).

Every such request waits until its record is committed: no record, no answer. Committing one
record per request would cost a transaction (and a disk flush) each, and a tenant's appends are
serialised anyway (one hash chain per tenant). So requests hand their record to one writer thread,
which appends whatever has queued up meanwhile with `AuditLog.record_many`, one transaction per
tenant, and wakes each waiting request with its outcome. Alone, a request waits for one commit;
under load, many requests share one.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from aima.access.scope import Scope
from aima.storage.audit import AuditEntry, AuditLog
from aima.storage.relational import Database
from aima.storage.scoped import scoped_session

MAX_BATCH = 256
WRITER_ACTOR = "system:audit-writer"


@dataclass
class _Pending:
    tenant_id: str
    entry: AuditEntry
    done: Future[int] = field(default_factory=Future)


class AuditWriterClosed(RuntimeError):
    """The writer was closed; nothing more can be recorded through it."""


class AuditWriter:
    """Appends audit records in batches on a thread of its own (see module docstring)."""

    def __init__(self, db: Database, audit: AuditLog, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._audit = audit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()  # nothing is queued behind the stop mark
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def write(self, tenant_id: str, entry: AuditEntry) -> int:
        """Append ``entry`` to the tenant's chain; return its seq once committed, or raise why not."""
        return self.submit(tenant_id, entry).result()

    def submit(self, tenant_id: str, entry: AuditEntry) -> Future[int]:
        """Queue ``entry`` for the tenant's chain; the future gives its seq once committed (or the
        error). For callers that wait without blocking a thread (``asyncio.wrap_future``)."""
        entry.check()  # refuse a bad entry here, not in a batch it would fail for everyone
        pending = _Pending(tenant_id, entry)
        with self._lock:
            if self._closed:
                raise AuditWriterClosed("the audit writer is closed")
            self._queue.put(pending)
        return pending.done

    def close(self) -> None:
        """Commit what is queued, then stop the thread (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        by_tenant: dict[str, list[_Pending]] = {}
        for pending in batch:
            by_tenant.setdefault(pending.tenant_id, []).append(pending)
        for tenant_id, group in by_tenant.items():
            try:
                with scoped_session(self._db, Scope.for_tenant(tenant_id, WRITER_ACTOR)) as session:
                    seqs = self._audit.record_many(session, tenant_id, [p.entry for p in group])
            except Exception as exc:  # every waiting request learns why its record is missing
                for pending in group:
                    pending.done.set_exception(exc)
            else:
                for pending, seq in zip(group, seqs, strict=True):
                    pending.done.set_result(seq)
