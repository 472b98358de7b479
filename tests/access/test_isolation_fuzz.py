"""Isolation under random data: for every user, the case repository and the scoped data layer return
exactly the cases the policy allows; nothing crosses a tenant or reaches a case without membership."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import pytest
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from aima.access import Action, Resource, Scope, Subject, decide, shareable_role
from aima.access.policy import CaseRole, Role
from aima.storage.cases import CaseRepository, NotFound
from aima.storage.relational import Database, alembic_config
from aima.storage.schema import cases, media, tenants, users
from aima.storage.scoped import ScopeViolation, scoped_session


@pytest.fixture(scope="module")
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One database for every example, SQLite unless a test asks for PostgreSQL; ids are always fresh."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'aima.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    database = Database(url)
    database.migrate()
    yield database
    if backend == "postgresql":  # the shared database goes back to empty
        with database.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
    database.dispose()


@dataclass(frozen=True)
class CaseSpec:
    owner: int  # index into the tenant's non-guest users
    shares: tuple[tuple[int, str], ...]  # (index into the tenant's users, case role)
    media: int


@dataclass(frozen=True)
class TenantSpec:
    roles: tuple[Role, ...]  # one per user; the first is never a guest, so cases have an owner
    cases: tuple[CaseSpec, ...]


ROLES: list[Role] = ["admin", "user", "guest"]
case_specs = st.builds(
    CaseSpec,
    owner=st.integers(0, 3),
    shares=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["owner", "analyst", "viewer"])), max_size=3
    ).map(tuple),
    media=st.integers(0, 2),
)
tenant_specs = st.builds(
    TenantSpec,
    roles=st.tuples(st.sampled_from(["admin", "user"]), *[st.sampled_from(ROLES)] * 3).flatmap(
        lambda roles: st.integers(1, 4).map(lambda n: roles[:n])
    ),
    cases=st.lists(case_specs, max_size=3).map(tuple),
)


def new_id() -> str:
    return str(uuid.uuid4())


@settings(max_examples=30, deadline=None)
@given(specs=st.lists(tenant_specs, min_size=1, max_size=3))
def test_every_user_sees_exactly_what_the_policy_allows(db: Database, specs: list[TenantSpec]) -> None:
    repo = CaseRepository(db)
    subjects: list[Subject] = []
    all_cases: dict[str, str] = {}  # case id -> tenant
    members: dict[str, dict[str, str]] = {}  # case id -> {user id: role}
    media_of: dict[str, set[str]] = {}
    for spec in specs:
        tenant = new_id()
        people = [Subject(new_id(), tenant, role) for role in spec.roles]
        subjects += people
        with db.engine.begin() as c:  # identity rows come from elsewhere; seeded past the guard
            c.execute(insert(tenants).values(id=tenant, name=tenant))
            for person in people:
                c.execute(
                    insert(users).values(
                        id=person.user_id, tenant_id=tenant, username=person.user_id, role=person.role
                    )
                )
        owners = [p for p in people if p.role != "guest"]
        for case_spec in spec.cases:
            owner = owners[case_spec.owner % len(owners)]
            case_id = repo.create(Scope.for_tenant(tenant, owner.user_id), "case", owner.user_id)["id"]
            all_cases[case_id] = tenant
            members[case_id] = {owner.user_id: "owner"}
            for index, role in case_spec.shares:
                person = people[index % len(people)]
                if person.user_id == owner.user_id and role != "owner":
                    continue  # the only owner cannot step down (tests/access/test_last_owner.py)
                if shareable_role(person.role, role):
                    repo.share(Scope.for_case(tenant, case_id, owner.user_id), case_id, person.user_id, role)
                    members[case_id][person.user_id] = role
                else:
                    with pytest.raises(ValueError, match="cannot be"):
                        repo.share(Scope.for_tenant(tenant, owner.user_id), case_id, person.user_id, role)
            media_of[case_id] = set()
            with scoped_session(db, Scope.for_case(tenant, case_id, owner.user_id)) as s:
                for _ in range(case_spec.media):
                    media_id = new_id()
                    s.execute(
                        insert(media).values(
                            id=media_id,
                            tenant_id=tenant,
                            case_id=case_id,
                            sha256=uuid.uuid4().hex * 2,
                            size=1,
                            content_type="audio/wav",
                            object_key=media_id,
                        )
                    )
                    media_of[case_id].add(media_id)

    for subject in subjects:
        memberships = repo.memberships(subject.tenant_id, subject.user_id)
        assert memberships == {c: m[subject.user_id] for c, m in members.items() if subject.user_id in m}
        allowed = {
            case_id
            for case_id, tenant in all_cases.items()
            if decide(
                subject,
                Action.CASE_READ,
                Resource(tenant, case_id, cast(CaseRole | None, memberships.get(case_id))),
            ).allowed
        }
        assert allowed == {
            case_id
            for case_id, tenant in all_cases.items()
            if tenant == subject.tenant_id and (subject.role == "admin" or case_id in memberships)
        }
        scope = Scope.for_subject(subject, memberships)

        assert {case["id"] for case in repo.list(scope)} == allowed
        for case_id in all_cases:
            case = repo.get(scope, case_id)
            found = repo.members(scope, case_id)
            if case_id in allowed:
                assert case is not None
                assert case["tenant_id"] == subject.tenant_id
                assert {m["user_id"]: m["role"] for m in found} == members[case_id]
            else:
                assert case is None
                assert found == []
        with scoped_session(db, scope) as s:  # the data layer directly, no WHERE at all
            assert set(s.scalars(select(cases.c.id))) == allowed
            assert set(s.scalars(select(media.c.id))) == set().union(*(media_of[c] for c in allowed))
            assert set(s.scalars(select(users.c.tenant_id))) <= {subject.tenant_id}


def seed_tenant(db: Database, *roles: Role) -> tuple[str, list[str]]:
    tenant, people = new_id(), [new_id() for _ in roles]
    with db.engine.begin() as c:
        c.execute(insert(tenants).values(id=tenant, name=tenant))
        for person, role in zip(people, roles, strict=True):
            c.execute(insert(users).values(id=person, tenant_id=tenant, username=person, role=role))
    return tenant, people


@pytest.mark.parametrize("db", ["sqlite", "postgresql"], indirect=True)
def test_repository_writes_stay_in_the_scope(db: Database) -> None:
    repo = CaseRepository(db)
    tenant, (owner, analyst, guest) = seed_tenant(db, "user", "user", "guest")
    other, (stranger,) = seed_tenant(db, "admin")
    mine, theirs = Scope.for_tenant(tenant, owner), Scope.for_tenant(other, stranger)
    case = repo.create(mine, "  Operation Lantern ", owner, retention_days=30)
    assert (case["name"], case["retention_days"], case["status"]) == ("Operation Lantern", 30, "open")
    foreign = repo.create(theirs, "theirs", stranger)["id"]

    with pytest.raises(ScopeViolation):
        repo.create(Scope.for_case(tenant, case["id"], owner), "outside any case", owner)
    with pytest.raises(NotFound):
        repo.create(mine, "owner from elsewhere", stranger)
    with pytest.raises(ValueError, match="guest"):
        repo.create(mine, "guest owner", guest)
    with pytest.raises(ValueError, match="name"):
        repo.create(mine, " ", owner)

    assert repo.rename(mine, case["id"], "Lantern II")
    assert not repo.rename(mine, foreign, "hijacked")
    unchanged = repo.get(theirs, foreign)
    assert unchanged is not None
    assert unchanged["name"] == "theirs"

    repo.share(mine, case["id"], analyst, "analyst")
    repo.share(mine, case["id"], guest, "viewer")
    repo.share(mine, case["id"], analyst, "viewer")  # a second share changes the role
    with pytest.raises(NotFound, match="user"):
        repo.share(mine, case["id"], stranger, "viewer")
    with pytest.raises(NotFound, match="case"):
        repo.share(mine, foreign, analyst, "viewer")
    with pytest.raises(ValueError, match="guest"):
        repo.share(mine, case["id"], guest, "analyst")
    with pytest.raises(ValueError, match="role"):
        repo.share(mine, case["id"], analyst, "admin")
    assert {m["user_id"]: m["role"] for m in repo.members(mine, case["id"])} == {
        owner: "owner",
        analyst: "viewer",
        guest: "viewer",
    }
    assert repo.memberships(tenant, analyst) == {case["id"]: "viewer"}
    assert repo.memberships(other, analyst) == {}

    assert repo.unshare(mine, case["id"], guest)
    assert not repo.unshare(mine, case["id"], guest)
    assert not repo.unshare(mine, foreign, stranger)
    assert repo.memberships(tenant, guest) == {}

    assert not repo.delete_rows(mine, foreign)
    assert repo.delete_rows(Scope.for_case(tenant, case["id"], owner), case["id"])
    assert repo.get(mine, case["id"]) is None
    assert repo.memberships(tenant, owner) == {}  # memberships cascade with the case
    assert [c["id"] for c in repo.list(theirs)] == [foreign]
