"""The transactional outbox: the kernel's event port.

A service that changes state writes the events announcing the change into the ``outbox`` table in
the same transaction as the change and its audit record (`Outbox.add`), so the three commit or
roll back together: nothing is stored unaudited, and no event escapes for work that was undone. A
relay (`events.relay.OutboxRelay`) publishes committed rows on the bus and marks them published;
the process that wrote them publishes at once, and every relay also sweeps rows left pending by a
crash or a bus outage. A row may be published twice (two relays, a crash between publishing and
marking); the bus drops the repeat by event id, and consumers are idempotent.

Function handlers use `Outbox.settle`: the processed-events claim of the handled event and the
events it emitted, in one transaction, so a redelivered event does its work once and its emitted
events are never lost.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from aima.storage.relational import Database, after_commit, insert_new
from aima.storage.schema import outbox, processed_events, utcnow
from events.envelope import CloudEvent

PAGE = 500
_LOCK = threading.Lock()
_LISTENERS: weakref.WeakKeyDictionary[Database, list[Callable[[Sequence[CloudEvent]], None]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class Pending:
    """A committed event not yet marked published."""

    seq: int
    event: CloudEvent
    created_at: datetime


class Outbox:
    """The ``outbox`` table of one database (see module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        with _LOCK:
            self._listeners = _LISTENERS.setdefault(db, [])

    def on_commit(self, listener: Callable[[Sequence[CloudEvent]], None]) -> None:
        """Call ``listener`` with the events of every transaction on this database, in this process,
        that committed some, through any `Outbox` (a relay publishes them at once instead of waiting
        for its next sweep)."""
        with _LOCK:
            self._listeners.append(listener)

    def off_commit(self, listener: Callable[[Sequence[CloudEvent]], None]) -> None:
        """Stop calling ``listener``."""
        with _LOCK:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def add(self, session: Session, events: Iterable[CloudEvent], *, notify: bool = True) -> None:
        """Write ``events`` in ``session``'s transaction; an id already written is kept as it was.

        ``notify``: tell the `on_commit` listeners once it committed (False: the caller publishes).
        """
        written = list(events)
        rows = [
            {
                "event_id": e.id,
                "type": e.type,
                "body": e.to_json().decode(),
                "created_at": utcnow(),
                "job_id": _job_of(e),
            }
            for e in written
        ]
        if not rows:
            return
        session.execute(insert_new(session, outbox, ["event_id"]), rows)
        if not notify:
            return
        with _LOCK:
            listeners = list(self._listeners)
        for listener in listeners:
            after_commit(session, lambda listener=listener: listener(written))  # type: ignore[misc]

    def write(self, events: Sequence[CloudEvent]) -> None:
        """Write ``events`` in a transaction of their own (for a change that committed in several)."""
        with self._db.session() as session:
            self.add(session, events)

    def settle(self, consumer: str, event_id: str, emitted: Sequence[CloudEvent]) -> bool:
        """Record that ``consumer`` handled ``event_id`` and write what it emitted, in one transaction.

        False (and nothing written) if the event was settled before: a redelivery.
        """
        with self._db.session() as session:
            if not self._db.claim_event(session, consumer, event_id):
                return False
            self.add(session, emitted, notify=False)
            return True

    def handled(self, consumer: str, event_id: str) -> bool:
        """Whether ``consumer`` settled ``event_id`` already."""
        with self._db.session(readonly=True) as session:
            found = session.execute(
                select(processed_events.c.event_id).where(
                    processed_events.c.consumer == consumer, processed_events.c.event_id == event_id
                )
            ).first()
            return found is not None

    def pending(self, *, limit: int = PAGE, older_than: float = 0.0) -> list[Pending]:
        """Committed events not marked published, oldest first (only those older than ``older_than`` s)."""
        cutoff = utcnow() - timedelta(seconds=older_than)
        with self._db.session(readonly=True) as session:
            rows = session.execute(
                select(outbox.c.seq, outbox.c.body, outbox.c.created_at)
                .where(outbox.c.published_at.is_(None), outbox.c.created_at <= cutoff)
                .order_by(outbox.c.seq)
                .limit(limit)
            ).all()
        return [Pending(row.seq, CloudEvent.from_json(row.body), row.created_at) for row in rows]

    def mark_published(self, event_ids: Sequence[str]) -> None:
        """Mark these events published."""
        if not event_ids:
            return
        with self._db.session() as session:
            session.execute(
                update(outbox)
                .where(outbox.c.event_id.in_(list(event_ids)), outbox.c.published_at.is_(None))
                .values(published_at=utcnow())
            )

    def for_jobs(self, job_ids: Sequence[str]) -> list[CloudEvent]:
        """Every event kept about these jobs (their data's ``job_id``), in the order they were written."""
        if not job_ids:
            return []
        with self._db.session(readonly=True) as session:
            rows = session.execute(
                select(outbox.c.body).where(outbox.c.job_id.in_(list(job_ids))).order_by(outbox.c.seq)
            ).all()
        return [CloudEvent.from_json(row.body) for row in rows]

    def forget(self, consumer: str, event_ids: Sequence[str]) -> int:
        """Drop ``consumer``'s processed claims of these events, so a resume runs them again (for a
        step that failed); returns how many were dropped."""
        if not event_ids:
            return 0
        with self._db.session() as session:
            result = session.execute(
                delete(processed_events)
                .where(
                    processed_events.c.consumer == consumer, processed_events.c.event_id.in_(list(event_ids))
                )
                .returning(processed_events.c.event_id)
            )
            return len(result.all())

    def purge(self, published_before: datetime) -> int:
        """Delete rows published before ``published_before``; returns how many."""
        with self._db.session() as session:
            result = session.execute(
                delete(outbox)
                .where(outbox.c.published_at.is_not(None), outbox.c.published_at < published_before)
                .returning(outbox.c.seq)
            )
            return len(result.all())


def _job_of(event: CloudEvent) -> str | None:
    """The job an event is about: its data's ``job_id`` (None for one about no job)."""
    data = event.data
    job_id = data.get("job_id") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) and len(job_id) <= 36 else None
