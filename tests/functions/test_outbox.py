"""The transactional outbox: a kernel change and its events commit together, and the relay publishes
them after the commit (at once in the committing process, by its sweep otherwise)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.storage.cases import CaseRepository
from aima.storage.outbox import Outbox
from aima.storage.relational import Database
from events.bus import Subscription
from events.bus_memory import MemoryBus
from events.catalogue import CaseCreated, CaseDeleted
from events.envelope import CloudEvent, derived_event_id
from events.relay import OutboxRelay
from tests.support import eventually


def owner_of(db: Database) -> tuple[str, str]:
    directory = UserDirectory(db)
    tenant = directory.ensure_tenant("acme")
    return tenant, directory.create_user(tenant, "owner", None, "user").id


async def test_a_case_is_announced_once_committed_and_a_rolled_back_one_never(sqlite_db: Database) -> None:
    tenant, owner = owner_of(sqlite_db)
    bus = MemoryBus()
    seen: list[CloudEvent] = []

    async def record(event: CloudEvent) -> Sequence[CloudEvent]:
        seen.append(event)
        return []

    await bus.subscribe(Subscription("observer", ("io.aima.case.*",), record))
    relay = OutboxRelay(Outbox(sqlite_db), bus, interval=60)  # no sweep in this test: only commits
    await relay.start()
    cases = CaseRepository(sqlite_db)  # its own Outbox: commits still reach the relay
    try:
        scope = Scope.for_tenant(tenant, "t")
        row = await asyncio.to_thread(cases.create, scope, "Dock", owner)

        def failing_audit(_session: object) -> None:
            raise RuntimeError("the audit record could not be written")

        with pytest.raises(RuntimeError):
            await asyncio.to_thread(cases.create, scope, "Undone", owner, audit=failing_audit)
        await asyncio.to_thread(cases.delete_rows, Scope.for_case(tenant, row["id"], "t"), row["id"])
        await eventually(lambda: len(seen) >= 2)
        await bus.drain(timeout=5)
    finally:
        await relay.stop()
        await bus.close()

    assert [(e.type, e.caseid) for e in seen] == [
        (CaseCreated.TYPE, row["id"]),
        (CaseDeleted.TYPE, row["id"]),
    ]
    assert seen[0].id == derived_event_id(row["id"], CaseCreated.TYPE)
    assert Outbox(sqlite_db).pending() == []


async def test_what_a_process_without_a_bus_committed_is_published_by_any_relays_sweep(
    sqlite_db: Database,
) -> None:
    tenant, owner = owner_of(sqlite_db)
    row = CaseRepository(sqlite_db).create(Scope.for_tenant(tenant, "cli"), "From the CLI", owner)
    [pending] = Outbox(sqlite_db).pending()
    assert pending.event.type == CaseCreated.TYPE

    bus = MemoryBus()
    seen: list[CloudEvent] = []

    async def record(event: CloudEvent) -> Sequence[CloudEvent]:
        seen.append(event)
        return []

    await bus.subscribe(Subscription("observer", ("io.aima.case.*",), record))
    relay = OutboxRelay(Outbox(sqlite_db), bus, interval=0.05, grace=0.0)
    await relay.start()
    try:
        await eventually(lambda: bool(seen))
    finally:
        await relay.stop()
        await bus.close()
    assert [e.caseid for e in seen] == [row["id"]]
    assert Outbox(sqlite_db).pending() == []
