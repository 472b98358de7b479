"""Memberships remembered by `CaseRepository` (the gateway's ``AIMA_ACCESS_CACHE_TTL``): every change
through the repository shows at once; one made by another process once the TTL has passed."""

from __future__ import annotations

import time
import uuid

import pytest

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.storage.cases import CaseRepository
from aima.storage.relational import Database


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    return sqlite_db


@pytest.fixture
def people(db: Database) -> tuple[str, str, str]:
    """A tenant, an owner and a second user in it."""
    directory = UserDirectory(db)
    tenant = directory.ensure_tenant("acme")
    owner = directory.create_user(tenant, f"owner-{uuid.uuid4().hex[:6]}", None, "user")
    other = directory.create_user(tenant, f"other-{uuid.uuid4().hex[:6]}", None, "user")
    return tenant, owner.id, other.id


def test_changes_through_the_repository_show_at_once(db: Database, people: tuple[str, str, str]) -> None:
    tenant, owner, other = people
    repo = CaseRepository(db, memberships_ttl=60)
    scope = Scope.for_tenant(tenant, owner)
    assert repo.memberships(tenant, owner) == {}
    case_id = str(repo.create(scope, "Case", owner)["id"])
    assert repo.memberships(tenant, owner) == {case_id: "owner"}
    assert repo.memberships(tenant, other) == {}
    repo.share(scope, case_id, other, "viewer")
    assert repo.memberships(tenant, other) == {case_id: "viewer"}
    repo.share(scope, case_id, other, "analyst")
    assert repo.memberships(tenant, other) == {case_id: "analyst"}
    repo.unshare(scope, case_id, other)
    assert repo.memberships(tenant, other) == {}
    repo.share(scope, case_id, other, "viewer")
    assert repo.delete_rows(scope, case_id)
    assert repo.memberships(tenant, owner) == {}
    assert repo.memberships(tenant, other) == {}


def test_a_change_by_another_process_shows_once_the_ttl_passed(
    db: Database, people: tuple[str, str, str]
) -> None:
    tenant, owner, other = people
    gateway = CaseRepository(db, memberships_ttl=0.3)
    elsewhere = CaseRepository(db)  # the CLI, another replica
    scope = Scope.for_tenant(tenant, owner)
    case_id = str(elsewhere.create(scope, "Case", owner)["id"])
    assert gateway.memberships(tenant, other) == {}
    elsewhere.share(scope, case_id, other, "viewer")
    assert gateway.memberships(tenant, other) == {}  # remembered
    time.sleep(0.35)
    assert gateway.memberships(tenant, other) == {case_id: "viewer"}


def test_callers_cannot_change_what_is_remembered(db: Database, people: tuple[str, str, str]) -> None:
    tenant, owner, _ = people
    repo = CaseRepository(db, memberships_ttl=60)
    case_id = str(repo.create(Scope.for_tenant(tenant, owner), "Case", owner)["id"])
    repo.memberships(tenant, owner)["forged"] = "owner"
    assert repo.memberships(tenant, owner) == {case_id: "owner"}
