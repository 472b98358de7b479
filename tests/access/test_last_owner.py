"""A case always keeps an owner: its only owner can neither leave nor be demoted until another member
is made owner (ownership is handed over), and two owners demoting themselves at the same moment do not
leave the case without one. On SQLite and the real PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.storage.cases import CaseRepository, LastOwner
from aima.storage.relational import Database
from aima.storage.schema import case_members


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, sqlite_db: Database) -> Iterator[Database]:
    if request.param == "sqlite":
        yield sqlite_db
        return
    database = Database(request.getfixturevalue("pg_database"))
    database.migrate()
    yield database
    database.dispose()


def people(db: Database, count: int) -> tuple[str, list[str]]:
    directory = UserDirectory(db)
    tenant = directory.ensure_tenant(f"acme-{uuid.uuid4().hex[:8]}")
    ids = [
        directory.create_user(tenant, f"u{n}-{uuid.uuid4().hex[:8]}", None, "user").id for n in range(count)
    ]
    return tenant, ids


def owners(db: Database, case_id: str) -> list[str]:
    with db.engine.connect() as c:  # maintenance read, outside the guarded sessions
        rows = c.execute(
            select(case_members.c.user_id).where(
                case_members.c.case_id == case_id, case_members.c.role == "owner"
            )
        )
        return sorted(str(row[0]) for row in rows)


def test_the_only_owner_can_neither_leave_nor_be_demoted(db: Database) -> None:
    tenant, (owner, analyst) = people(db, 2)
    repo = CaseRepository(db)
    scope = Scope.for_tenant(tenant, "test")
    case_id = str(repo.create(scope, "Case", owner)["id"])
    repo.share(scope, case_id, analyst, "analyst")
    audited: list[Any] = []

    with pytest.raises(LastOwner, match="only owner"):
        repo.unshare(scope, case_id, owner, audit=audited.append)
    for role in ("analyst", "viewer"):
        with pytest.raises(LastOwner, match="only owner"):
            repo.share(scope, case_id, owner, role, audit=audited.append)
    assert audited == []  # nothing happened, so nothing was recorded
    assert owners(db, case_id) == [owner]
    assert repo.memberships(tenant, owner) == {case_id: "owner"}

    # hand over: make the analyst owner first, then the former owner may step down or leave
    repo.share(scope, case_id, analyst, "owner")
    repo.share(scope, case_id, owner, "viewer")
    assert owners(db, case_id) == [analyst]
    assert repo.unshare(scope, case_id, owner)
    with pytest.raises(LastOwner):
        repo.unshare(scope, case_id, analyst)
    assert owners(db, case_id) == [analyst]
    assert repo.unshare(scope, case_id, str(uuid.uuid4())) is False  # no such member: nothing to keep


def test_two_owners_stepping_down_at_once_leave_one_owner(db: Database) -> None:
    tenant, (first, second) = people(db, 2)
    repo = CaseRepository(db)
    scope = Scope.for_tenant(tenant, "test")
    case_id = str(repo.create(scope, "Case", first)["id"])
    repo.share(scope, case_id, second, "owner")
    # each change waits inside its transaction for the other, so both would commit if unserialised
    barrier = threading.Barrier(2, timeout=2)
    outcomes: dict[str, str] = {}

    def rendezvous(_session: object) -> None:
        # a broken barrier: the other change waits for this one to commit (serialised, as it must be)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    def step_down(user_id: str, leave: bool) -> None:
        try:
            if leave:
                repo.unshare(scope, case_id, user_id, audit=rendezvous)
            else:
                repo.share(scope, case_id, user_id, "viewer", audit=rendezvous)
            outcomes[user_id] = "done"
        except LastOwner:
            outcomes[user_id] = "refused"

    threads = [
        threading.Thread(target=step_down, args=(first, True)),
        threading.Thread(target=step_down, args=(second, False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["done", "refused"]
    [kept] = owners(db, case_id)
    assert outcomes[kept] == "refused"
