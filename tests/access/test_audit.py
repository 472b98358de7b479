"""The tamper-evident audit log on SQLite and the real PostgreSQL: the chain verifies, tampering of any
kind is reported, tenants are independent, concurrent appends keep the chain, exports parse back."""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import delete, insert, select, update

from aima.access.scope import Scope
from aima.storage import audit as audit_module
from aima.storage.audit import FIELDS, GENESIS, AuditLog, record_hash
from aima.storage.cases import CaseRepository
from aima.storage.relational import Database, alembic_config
from aima.storage.schema import audit_heads, audit_log, tenants, users
from aima.storage.scoped import ScopeViolation, scoped_session


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated database; the shared PostgreSQL one is downgraded to empty afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'aima.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    database = Database(url, pool_size=8)
    database.migrate()
    yield database
    if request.param == "postgresql":
        with database.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
    database.dispose()


@pytest.fixture
def log(db: Database) -> AuditLog:
    return AuditLog(db)


def new_id() -> str:
    return str(uuid.uuid4())


def append(log: AuditLog, tenant: str, n: int, **fields: object) -> list[int]:
    values: dict[str, object] = {"actor": "alice", "action": "case.read", "outcome": "allowed"} | fields
    return [log.record_now(tenant_id=tenant, detail={"n": i}, **values) for i in range(n)]  # type: ignore[arg-type]


def tamper(db: Database, statement: object) -> None:
    """Change the table behind the log's back, as someone with database access could."""
    with db.engine.begin() as c:
        c.execute(statement)  # type: ignore[call-overload]


def test_a_chain_verifies_and_links_from_genesis(db: Database, log: AuditLog) -> None:
    tenant = new_id()
    assert log.verify(tenant) == []  # no records, no head
    seqs = append(
        log,
        tenant,
        4,
        case_id="c1",
        object="media/m1",
        request_id="r1",
        client="10.0.0.1",
        trace_id="ab" * 16,
    )
    assert seqs == sorted(seqs)
    assert log.verify(tenant) == []
    with db.engine.connect() as c:
        query = select(audit_log).where(audit_log.c.tenant_id == tenant).order_by(audit_log.c.seq)
        rows = list(c.execute(query).mappings())
        head = c.execute(
            select(audit_heads.c.seq, audit_heads.c.hash).where(audit_heads.c.tenant_id == tenant)
        ).one()
    assert rows[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    for row in rows:
        assert row["hash"] == record_hash(row, row["prev_hash"])
    assert tuple(head) == (rows[-1]["seq"], rows[-1]["hash"])


EDITS: dict[str, object] = {
    "tenant_id": "someone-else",
    "time": datetime(2020, 1, 1, tzinfo=UTC),
    "actor": "mallory",
    "action": "case.delete",
    "case_id": "other-case",
    "object": "media/other",
    "outcome": "denied",
    "request_id": "forged",
    "client": "192.0.2.1",
    "trace_id": "cd" * 16,
    "detail": {"n": 99},
    "prev_hash": "f" * 64,
    "hash": "e" * 64,
}


@pytest.mark.parametrize("column", [*EDITS, "seq"])
def test_editing_any_field_of_a_record_is_reported(db: Database, log: AuditLog, column: str) -> None:
    tenant = new_id()
    _, middle, last = append(
        log, tenant, 3, case_id="c1", object="o", request_id="r", client="c", trace_id="0" * 32
    )
    value = EDITS.get(column, middle + 10_000_000)
    tamper(db, update(audit_log).where(audit_log.c.seq == middle).values({column: value}))

    problems = log.verify(tenant)
    assert problems
    assert any(str(middle) in problem or str(last) in problem for problem in problems)
    assert log.verify(new_id()) == []


def test_rehashing_an_edited_record_breaks_the_next_link(db: Database, log: AuditLog) -> None:
    tenant = new_id()
    _, middle, last = append(log, tenant, 3)
    with db.engine.begin() as c:
        row = dict(c.execute(select(audit_log).where(audit_log.c.seq == middle)).mappings().one())
        row["actor"] = "mallory"
        c.execute(
            update(audit_log)
            .where(audit_log.c.seq == middle)
            .values(actor="mallory", hash=record_hash(row, row["prev_hash"]))
        )
    assert log.verify(tenant) == [
        f"broken link before record {last}: a record was deleted, inserted or reordered"
    ]


def test_deleting_a_middle_record_is_reported(db: Database, log: AuditLog) -> None:
    tenant = new_id()
    _, middle, after, _ = append(log, tenant, 4)
    tamper(db, delete(audit_log).where(audit_log.c.seq == middle))
    assert log.verify(tenant) == [
        f"broken link before record {after}: a record was deleted, inserted or reordered"
    ]


def test_deleting_the_last_record_is_reported(db: Database, log: AuditLog) -> None:
    tenant = new_id()
    _, before, last = append(log, tenant, 3)
    tamper(db, delete(audit_log).where(audit_log.c.seq == last))
    problem = f"head mismatch: the head names record {last}, the newest record is {before}"
    assert log.verify(tenant) == [f"{problem} (records deleted at the end?)"]


def test_deleting_every_record_or_the_head_is_reported(db: Database, log: AuditLog) -> None:
    emptied, headless = new_id(), new_id()
    append(log, emptied, 2)
    append(log, headless, 2)
    tamper(db, delete(audit_log).where(audit_log.c.tenant_id == emptied))
    tamper(db, delete(audit_heads).where(audit_heads.c.tenant_id == headless))
    assert log.verify(emptied) == [
        "head mismatch: the head names record "
        + log_head_seq(db, emptied)
        + ", no records (records deleted at the end?)"
    ]
    assert log.verify(headless) == ["head missing: the chain has records but no head"]


def log_head_seq(db: Database, tenant: str) -> str:
    with db.engine.connect() as c:
        return str(c.scalar(select(audit_heads.c.seq).where(audit_heads.c.tenant_id == tenant)))


def test_tenants_have_independent_chains(db: Database, log: AuditLog) -> None:
    a, b = new_id(), new_id()
    for _ in range(3):  # interleaved appends
        append(log, a, 1)
        append(log, b, 1)
    with db.engine.connect() as c:
        firsts = c.execute(
            select(audit_log.c.tenant_id, audit_log.c.prev_hash)
            .where(audit_log.c.tenant_id.in_([a, b]))
            .order_by(audit_log.c.seq)
            .limit(2)
        ).all()
    assert {prev for _, prev in firsts} == {GENESIS}
    tamper(db, update(audit_log).where(audit_log.c.tenant_id == a).values(actor="mallory"))
    assert len(log.verify(a)) == 3
    assert log.verify(b) == []


def test_record_writes_in_the_callers_transaction(db: Database, log: AuditLog) -> None:
    tenant = new_id()
    append(log, tenant, 1)

    def change_then_fail() -> None:
        with scoped_session(db, Scope.for_tenant(tenant, "bob")) as s:
            log.record(
                s, tenant_id=tenant, actor="bob", action="case.update", outcome="allowed", case_id="c1"
            )
            raise RuntimeError("change failed")

    with pytest.raises(RuntimeError, match="change failed"):
        change_then_fail()
    with scoped_session(db, Scope.for_tenant(tenant, "bob")) as s:
        s.execute(insert(tenants).values(id=tenant, name=f"t-{tenant}"))
        s.execute(insert(users).values(id=new_id(), tenant_id=tenant, username=new_id(), role="user"))
        log.record(s, tenant_id=tenant, actor="bob", action="user.create", outcome="allowed")
    assert [r["action"] for r in log.query(tenant)] == ["user.create", "case.read"]
    assert log.verify(tenant) == []


def test_a_record_outside_the_sessions_scope_is_refused(db: Database, log: AuditLog) -> None:
    tenant, other = new_id(), new_id()
    with pytest.raises(ScopeViolation), scoped_session(db, Scope.for_tenant(tenant, "bob")) as s:
        log.record(s, tenant_id=other, actor="bob", action="case.read", outcome="allowed")
    assert log.query(other) == []


def test_bad_records_are_refused(log: AuditLog) -> None:
    tenant = new_id()
    with pytest.raises(ValueError, match="outcome"):
        log.record_now(tenant_id=tenant, actor="a", action="x", outcome="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="larger"):
        log.record_now(
            tenant_id=tenant, actor="a", action="x", outcome="failed", detail={"blob": "x" * 20_000}
        )
    assert log.query(tenant) == []


def test_records_of_a_deleted_case_stay(db: Database, log: AuditLog) -> None:
    tenant, owner = new_id(), new_id()
    with db.engine.begin() as c:
        c.execute(insert(tenants).values(id=tenant, name=f"t-{tenant}"))
        c.execute(insert(users).values(id=owner, tenant_id=tenant, username=owner, role="user"))
    repo = CaseRepository(db)
    case = repo.create(Scope.for_tenant(tenant, owner), "doomed", owner)
    append(log, tenant, 2, case_id=case["id"])
    assert repo.delete_rows(Scope.for_tenant(tenant, owner), case["id"])
    assert len(log.query(tenant, case_id=case["id"])) == 2
    assert log.verify(tenant) == []


def test_query_filters_pages_and_orders_newest_first(log: AuditLog) -> None:
    tenant = new_id()
    start = datetime.now(UTC)
    append(log, tenant, 3, actor="alice", case_id="c1")
    middle = datetime.now(UTC)
    append(log, tenant, 2, actor="bob", case_id="c2", action="media.upload")
    records = log.query(tenant)
    assert [r["seq"] for r in records] == sorted((r["seq"] for r in records), reverse=True)
    assert set(records[0]) == set(FIELDS)
    assert [r["detail"] for r in log.query(tenant, actor="alice")] == [{"n": 2}, {"n": 1}, {"n": 0}]
    assert len(log.query(tenant, case_id="c2")) == 2
    assert len(log.query(tenant, action="media.upload")) == 2
    assert len(log.query(tenant, since=middle)) == 2
    assert len(log.query(tenant, since=start, until=middle)) == 3
    assert [r["seq"] for r in log.query(tenant, limit=2, offset=1)] == [r["seq"] for r in records[1:3]]
    with pytest.raises(ValueError, match="limit"):
        log.query(tenant, limit=0)


@pytest.mark.parametrize("batch", [2, 500])
def test_export_csv_and_json_parse_back_with_filters(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(audit_module, "EXPORT_BATCH", batch)
    tenant = new_id()
    append(log, tenant, 3, actor="alice", case_id="c1", client='"quoted", with comma')
    append(log, tenant, 2, actor="bob", case_id="c2")
    append(log, new_id(), 2, actor="alice")  # another tenant's records never appear

    chunks = list(log.export(tenant, "csv"))
    assert len(chunks) == 1 + -(-5 // batch)  # streamed: the header, then one chunk per batch
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert list(rows[0]) == list(FIELDS)
    assert [row["actor"] for row in rows] == ["alice"] * 3 + ["bob"] * 2
    assert [int(row["seq"]) for row in rows] == sorted(int(row["seq"]) for row in rows)
    assert rows[0]["client"] == '"quoted", with comma'
    assert json.loads(rows[4]["detail"]) == {"n": 1}
    assert rows[0]["request_id"] == ""

    records = json.loads("".join(log.export(tenant, "json", case_id="c1")))
    assert [r["case_id"] for r in records] == ["c1"] * 3
    assert [r["detail"] for r in records] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert datetime.fromisoformat(records[0]["time"]).tzinfo is not None
    for record in records:  # an export carries what an outside party needs to check the chain
        assert record["hash"] == record_hash(
            record | {"time": datetime.fromisoformat(record["time"])}, record["prev_hash"]
        )

    assert json.loads("".join(log.export(tenant, "json", actor="nobody"))) == []
    assert "".join(log.export(tenant, "csv", since=datetime.now(UTC) + timedelta(hours=1))).count("\n") == 1
    with pytest.raises(ValueError, match="fmt"):
        list(log.export(tenant, "xml"))  # type: ignore[arg-type]


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # SQLite has a single writer by design
def test_concurrent_appends_keep_the_chain(db: Database, log: AuditLog) -> None:
    assert db.engine.dialect.name == "postgresql"
    tenants_ = [new_id(), new_id()]
    threads, per_thread, errors = 6, 15, []
    start = threading.Barrier(threads)

    def work(index: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                log.record_now(
                    tenant_id=tenants_[i % 2],
                    actor=f"worker-{index}",
                    action="analysis.run",
                    outcome="allowed",
                )
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    for tenant in tenants_:
        assert log.verify(tenant) == []
    total = sum(len(log.query(tenant, limit=1000)) for tenant in tenants_)
    assert total == threads * per_thread
