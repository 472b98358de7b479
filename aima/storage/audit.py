"""The tamper-evident audit log: an append-only hash chain per tenant.

Each record's ``hash`` is ``sha256(canonical JSON of its fields + prev_hash)``, where ``prev_hash``
is the hash of the tenant's previous record (64 zeros for the first). ``audit_heads`` keeps the
tenant's newest seq and hash, updated in the same transaction, so `AuditLog.verify` finds an edited
record, a deleted or reordered one, and a deleted last record. Appends per tenant are serialised:
on PostgreSQL by a transaction-level advisory lock on the tenant, on SQLite by its single writer.

`AuditLog.record` writes in the caller's transaction, so a change and its record commit together
or not at all. Records carry who, what, which case and object, outcome and request context, never
media content; they have no foreign key to cases, so they outlive a deleted case. The module
offers no way to change or delete a record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, bindparam, insert, select, update
from sqlalchemy.orm import Session

from aima.access.scope import Scope
from aima.storage.relational import Database, transaction_lock
from aima.storage.schema import audit_heads, audit_log, utcnow
from aima.storage.scoped import guard, scoped_session

Outcome = Literal["allowed", "denied", "failed"]
AuditHook = Callable[[Session], object]
"""Passed to a change (e.g. `aima.storage.cases.CaseRepository.rename`) and called in its transaction
once the change succeeded, to write its record with `AuditLog.record`: both commit or neither does."""
OUTCOMES = frozenset({"allowed", "denied", "failed"})
GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq",
    "tenant_id",
    "time",
    "actor",
    "action",
    "case_id",
    "object",
    "outcome",
    "request_id",
    "client",
    "trace_id",
    "detail",
)
FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")
MAX_DETAIL_BYTES = 16 * 1024
MAX_QUERY_LIMIT = 1000
EXPORT_BATCH = 500
ANONYMOUS_CHAIN = "anonymous"
"""The chain of failed authentications (the gateway's ``ANONYMOUS_TENANT``): a refused sign-in or
token names no tenant that could be trusted, so it is recorded in this chain of no tenant."""
SYSTEM_CHAIN = "system"
"""The chain of platform housekeeping that concerns no tenant, such as the leftover temporary files the
retention sweep removes (`aima.storage.retention`), and of exports of the chains of no tenant."""
CHAINS = (ANONYMOUS_CHAIN, SYSTEM_CHAIN)
"""The chains of no tenant; they are verified, queried and exported like a tenant's (their name takes
the place of the tenant id, which is a UUID, so the two never collide)."""


def record_hash(record: Mapping[Any, Any], prev_hash: str) -> str:
    """The chain hash of ``record`` (a row of ``audit_log``) following ``prev_hash``."""
    fields = {name: record[name] for name in HASHED_FIELDS}
    fields["time"] = _iso(record["time"])
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256((canonical + prev_hash).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One record to append: who, what, on which case and object, the outcome and request context.
    The log adds the tenant, time, seq and hashes."""

    actor: str
    action: str
    outcome: Outcome
    case_id: str | None = None
    object: str | None = None
    request_id: str | None = None
    client: str | None = None
    trace_id: str | None = None
    detail: dict[str, Any] | None = None

    def check(self) -> None:
        """Raise ValueError for an unknown outcome or a detail over `MAX_DETAIL_BYTES`."""
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        if (
            self.detail is not None
            and len(json.dumps(self.detail, allow_nan=False).encode()) > MAX_DETAIL_BYTES
        ):
            raise ValueError(f"audit detail is larger than {MAX_DETAIL_BYTES} bytes")

    def values(self, tenant_id: str, time: datetime) -> dict[str, Any]:
        """The row to insert, with placeholder hashes."""
        given = {field.name: getattr(self, field.name) for field in fields(self)}
        return {"tenant_id": tenant_id, "time": time, **given, "prev_hash": GENESIS, "hash": GENESIS}


class AuditLog:
    """Append, verify, query and export the audit records of a database (see module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        guard(db)

    def record(
        self,
        session: Session,
        *,
        tenant_id: str,
        actor: str,
        action: str,
        outcome: Outcome,
        case_id: str | None = None,
        object: str | None = None,
        request_id: str | None = None,
        client: str | None = None,
        trace_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append a record in ``session``'s transaction (scoped to ``tenant_id``); returns its seq."""
        entry = AuditEntry(actor, action, outcome, case_id, object, request_id, client, trace_id, detail)
        return self.record_many(session, tenant_id, [entry])[0]

    def record_many(self, session: Session, tenant_id: str, entries: Sequence[AuditEntry]) -> list[int]:
        """Append ``entries`` to the tenant's chain, in this order, in ``session``'s transaction; returns
        their seqs. A fixed number of statements whatever their number: for writers that batch."""
        for entry in entries:
            entry.check()
        if not entries:
            return []
        transaction_lock(session, f"aima.audit:{tenant_id}")
        head = session.execute(
            select(audit_heads.c.seq, audit_heads.c.hash).where(audit_heads.c.tenant_id == tenant_id)
        ).first()
        now = utcnow()
        # the hash covers seq and the values as stored, so insert first, then link and seal the rows
        rows = (
            session.execute(
                insert(audit_log).returning(*audit_log.c, sort_by_parameter_order=True),
                [entry.values(tenant_id, now) for entry in entries],
            )
            .mappings()
            .all()
        )
        prev_hash = GENESIS if head is None else head.hash
        seals = []
        for row in rows:
            digest = record_hash(row, prev_hash)
            seals.append({"b_seq": row["seq"], "b_prev": prev_hash, "b_hash": digest})
            prev_hash = digest
        session.execute(
            update(audit_log)
            .where(audit_log.c.seq == bindparam("b_seq"))
            .values(prev_hash=bindparam("b_prev"), hash=bindparam("b_hash")),
            seals,
        )
        seq = int(rows[-1]["seq"])
        if head is None:
            session.execute(insert(audit_heads).values(tenant_id=tenant_id, seq=seq, hash=prev_hash))
        else:
            session.execute(
                update(audit_heads)
                .where(audit_heads.c.tenant_id == tenant_id)
                .values(seq=seq, hash=prev_hash)
            )
        return [int(row["seq"]) for row in rows]

    def record_now(
        self,
        *,
        tenant_id: str,
        actor: str,
        action: str,
        outcome: Outcome,
        case_id: str | None = None,
        object: str | None = None,
        request_id: str | None = None,
        client: str | None = None,
        trace_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """`record` in a transaction of its own, for actions that change nothing else (reads, denials)."""
        with scoped_session(self._db, Scope.for_tenant(tenant_id, actor)) as session:
            return self.record(
                session,
                tenant_id=tenant_id,
                actor=actor,
                action=action,
                outcome=outcome,
                case_id=case_id,
                object=object,
                request_id=request_id,
                client=client,
                trace_id=trace_id,
                detail=detail,
            )

    def verify(self, tenant_id: str) -> list[str]:
        """Problems with the tenant's chain, oldest first; empty when intact."""
        problems: list[str] = []
        expected_prev, last = GENESIS, None
        with scoped_session(self._db, Scope.for_tenant(tenant_id, "system:audit-verify")) as session:
            head = session.execute(
                select(audit_heads.c.seq, audit_heads.c.hash).where(audit_heads.c.tenant_id == tenant_id)
            ).first()
            rows = session.execute(
                select(audit_log).order_by(audit_log.c.seq).execution_options(yield_per=EXPORT_BATCH)
            ).mappings()
            for row in rows:
                seq = row["seq"]
                if row["prev_hash"] != expected_prev:
                    problems.append(
                        f"broken link before record {seq}: a record was deleted, inserted or reordered"
                    )
                if record_hash(row, row["prev_hash"]) != row["hash"]:
                    problems.append(f"record {seq} was edited")
                expected_prev, last = row["hash"], (seq, row["hash"])
        if head is None and last is not None:
            problems.append("head missing: the chain has records but no head")
        elif head is not None and (head.seq, head.hash) != last:
            newest = "no records" if last is None else f"the newest record is {last[0]}"
            problems.append(
                f"head mismatch: the head names record {head.seq}, {newest} (records deleted at the end?)"
            )
        return problems

    def head(self, tenant_id: str) -> tuple[int, str]:
        """The chain's newest record: ``(seq, hash)``, or ``(0, GENESIS)`` for an empty chain."""
        with scoped_session(self._db, Scope.for_tenant(tenant_id, "system:audit-verify")) as session:
            head = session.execute(
                select(audit_heads.c.seq, audit_heads.c.hash).where(audit_heads.c.tenant_id == tenant_id)
            ).first()
        return (0, GENESIS) if head is None else (int(head.seq), str(head.hash))

    def hash_at(self, tenant_id: str, seq: int) -> str | None:
        """The stored hash of record ``seq`` of the chain (GENESIS for 0), or None if there is none."""
        if seq == 0:
            return GENESIS
        with scoped_session(self._db, Scope.for_tenant(tenant_id, "system:audit-verify")) as session:
            value = session.execute(select(audit_log.c.hash).where(audit_log.c.seq == seq)).scalar()
        return None if value is None else str(value)

    def query(
        self,
        tenant_id: str,
        *,
        case_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The tenant's records matching the filters, newest first (``since`` inclusive, ``until`` not)."""
        if not 1 <= limit <= MAX_QUERY_LIMIT or offset < 0:
            raise ValueError(f"limit must be 1..{MAX_QUERY_LIMIT} and offset at least 0")
        conditions = _filters(case_id, actor, action, since, until)
        with scoped_session(self._db, Scope.for_tenant(tenant_id, "system:audit-query")) as session:
            rows = session.execute(
                select(audit_log)
                .where(*conditions)
                .order_by(audit_log.c.seq.desc())
                .limit(limit)
                .offset(offset)
            ).mappings()
            return [{name: row[name] for name in FIELDS} for row in rows]

    def export(
        self,
        tenant_id: str,
        fmt: Literal["json", "csv"],
        *,
        case_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[str]:
        """The matching records oldest first, in chunks: CSV with a header row, or one JSON array.

        Read in batches of short transactions, so a large export holds no transaction open.
        """
        if fmt not in ("json", "csv"):
            raise ValueError("fmt must be json or csv")
        conditions = _filters(case_id, actor, action, since, until)
        yield "[" if fmt == "json" else _csv_line(FIELDS)
        after, first = -1, True
        while True:
            with scoped_session(self._db, Scope.for_tenant(tenant_id, "system:audit-export")) as session:
                batch = list(
                    session.execute(
                        select(audit_log)
                        .where(audit_log.c.seq > after, *conditions)
                        .order_by(audit_log.c.seq)
                        .limit(EXPORT_BATCH)
                    ).mappings()
                )
            if not batch:
                break
            after = batch[-1]["seq"]
            if fmt == "csv":
                yield "".join(_csv_line(_flat(row).values()) for row in batch)
            else:
                yield ("" if first else ",") + ",".join(
                    json.dumps(_flat(row), ensure_ascii=False) for row in batch
                )
            first = False
        if fmt == "json":
            yield "]"


def _filters(
    case_id: str | None, actor: str | None, action: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if case_id is not None:
        conditions.append(audit_log.c.case_id == case_id)
    if actor is not None:
        conditions.append(audit_log.c.actor == actor)
    if action is not None:
        conditions.append(audit_log.c.action == action)
    if since is not None:
        conditions.append(audit_log.c.time >= since)
    if until is not None:
        conditions.append(audit_log.c.time < until)
    return conditions


def _flat(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A record with its time as ISO 8601, for export."""
    return {name: _iso(row[name]) if name == "time" else row[name] for name in FIELDS}


def _csv_line(values: Any) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(
        "" if value is None else json.dumps(value) if isinstance(value, dict) else value for value in values
    )
    return buffer.getvalue()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()
