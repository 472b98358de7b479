"""The batching audit writer on SQLite and PostgreSQL: concurrent requests share transactions, every
record lands exactly once in its tenant's chain, and a bad record fails only its own request."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from aima.storage.audit import AuditEntry, AuditLog
from aima.storage.relational import Database
from aima.storage.schema import audit_log
from functions.api.auditing import AuditWriter, AuditWriterClosed


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path / 'aima.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("private_pg_database")
    )
    database = Database(url, pool_size=8)
    database.migrate()
    yield database
    database.dispose()


class Spy(AuditLog):
    """An audit log that remembers how many records each batch held."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.batches: list[int] = []
        self.gate = threading.Event()

    def record_many(self, session: Any, tenant_id: str, entries: Sequence[AuditEntry]) -> list[int]:
        self.gate.wait(10)  # hold the first batch until the others have queued up
        self.batches.append(len(entries))
        return super().record_many(session, tenant_id, entries)


def entry(n: int, **overrides: Any) -> AuditEntry:
    return AuditEntry(
        **(
            {"actor": f"user-{n}", "action": "case.read", "outcome": "allowed", "detail": {"n": n}}
            | overrides
        )
    )


def test_concurrent_writes_share_transactions_and_keep_every_chain_intact(db: Database) -> None:
    log = Spy(db)
    writer = AuditWriter(db, log)
    tenants = [str(uuid.uuid4()) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        futures = [pool.submit(writer.write, tenants[n % 2], entry(n)) for n in range(60)]
        threading.Timer(0.3, log.gate.set).start()
        seqs = [future.result(timeout=30) for future in futures]
    writer.close()
    assert len(set(seqs)) == 60
    assert max(log.batches) > 1  # the requests that queued while a batch committed went together
    for tenant in tenants:
        assert log.verify(tenant) == []
        assert len(log.query(tenant, limit=100)) == 30
    with db.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(audit_log)).scalar_one() == 60


def test_a_bad_record_fails_only_its_own_write(db: Database) -> None:
    log = AuditLog(db)
    writer = AuditWriter(db, log)
    tenant = str(uuid.uuid4())
    with pytest.raises(ValueError, match="outcome"):
        writer.write(tenant, entry(1, outcome="maybe"))
    with pytest.raises(ValueError, match="larger than"):
        writer.write(tenant, entry(2, detail={"blob": "x" * 20_000}))
    assert writer.write(tenant, entry(3)) > 0
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(AuditWriterClosed):
        writer.write(tenant, entry(4))
    assert [r["actor"] for r in log.query(tenant)] == ["user-3"]
    assert log.verify(tenant) == []


def test_a_failing_batch_reports_the_failure_to_each_of_its_requests(db: Database) -> None:
    class Broken(AuditLog):
        def record_many(self, session: Any, tenant_id: str, entries: Sequence[AuditEntry]) -> list[int]:
            raise RuntimeError("disk full")

    writer = AuditWriter(db, Broken(db))
    with pytest.raises(RuntimeError, match="disk full"):
        writer.write(str(uuid.uuid4()), entry(1))
    writer.close()
