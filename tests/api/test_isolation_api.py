"""Isolation through the API under random worlds: every user lists, reads and sees the media of exactly
the cases the model allows (admins: every case of their tenant; others: the cases they are members
of), and is told 404 for every other case of any tenant, without a trace of it in the answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aima.access import Scope, shareable_role
from aima.access.policy import Role
from aima.identity.model import UserRecord
from functions.api.app import create_app
from functions.api.services import ApiServices
from tests.api.conftest import PASSWORD, api_settings, unique

CASE_ROLES = ("owner", "analyst", "viewer")


@dataclass(frozen=True)
class CaseSpec:
    owner: int  # index into the tenant's users who may own cases
    shares: tuple[tuple[int, str], ...]  # (index into the tenant's users, case role)
    media: int


@dataclass(frozen=True)
class TenantSpec:
    roles: tuple[Role, ...]  # the first is never a guest, so every case has an owner
    cases: tuple[CaseSpec, ...]


case_specs = st.builds(
    CaseSpec,
    owner=st.integers(0, 2),
    shares=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(CASE_ROLES)), max_size=3).map(tuple),
    media=st.integers(0, 2),
)
tenant_specs = st.builds(
    TenantSpec,
    roles=st.tuples(
        st.sampled_from(["admin", "user"]),
        st.lists(st.sampled_from(["admin", "user", "guest"]), max_size=2).map(tuple),
    ).map(lambda roles: (roles[0], *roles[1])),
    cases=st.lists(case_specs, max_size=3).map(tuple),
)


@dataclass
class Case:
    id: str
    tenant: str
    name: str
    members: dict[str, str]  # user id -> case role
    media: set[str]


@dataclass
class Person:
    user: UserRecord
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def may_read(self, case: Case) -> bool:
        """The expected model: admins read every case of their tenant, others the cases they belong to."""
        if case.tenant != self.user.tenant_id:
            return False
        return self.user.role.value == "admin" or self.user.id in case.members


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[ApiServices, TestClient]]:
    """One migrated SQLite database for every example; tenants and users get fresh names."""
    services = ApiServices.open(api_settings(tmp_path))
    with TestClient(create_app(services), base_url="http://api") as client:
        yield services, client
    asyncio.run(services.close())


def build(services: ApiServices, specs: list[TenantSpec]) -> tuple[list[Person], list[Case]]:
    """The world, through the kernel; tokens issued by the token service (a login is tested below)."""
    directory, repo = services.directory, services.cases
    people: list[Person] = []
    cases: list[Case] = []
    for spec in specs:
        tenant = directory.ensure_tenant(unique("tenant"))
        users = [directory.create_user(tenant, unique("u"), None, role) for role in spec.roles]
        people += [Person(u, services.tokens.issue_access(directory.principal(u.id))) for u in users]
        owners = [u for u in users if u.role.value != "guest"]
        scope = Scope.for_tenant(tenant, "test")
        for case_spec in spec.cases:
            owner = owners[case_spec.owner % len(owners)]
            name = unique("case")
            case = Case(
                str(repo.create(scope, name, owner.id)["id"]), tenant, name, {owner.id: "owner"}, set()
            )
            for index, role in case_spec.shares:
                member = users[index % len(users)]
                if member.id == owner.id and role != "owner":
                    continue  # the only owner cannot step down (tests/access/test_last_owner.py)
                if shareable_role(member.role.value, role):
                    repo.share(scope, case.id, member.id, role)
                    case.members[member.id] = role
            for _ in range(case_spec.media):
                media_id = str(uuid.uuid4())
                services.media.add(
                    Scope.for_case(tenant, case.id, "test"),
                    case_id=case.id,
                    media_id=media_id,
                    sha256=uuid.uuid4().hex * 2,
                    size=1,
                    content_type="audio/wav",
                    kind="audio",
                    filename=None,
                    object_key=f"cases/{case.id}/{media_id}",
                )
                case.media.add(media_id)
            cases.append(case)
    return people, cases


def assert_hidden(response: Any, case: Case) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["type"] == "urn:aima:problem:not-found"
    assert case.id not in response.text
    assert case.name not in response.text


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(tenant_specs, min_size=2, max_size=3))
def test_every_user_reaches_exactly_the_cases_the_model_allows(
    gateway: tuple[ApiServices, TestClient], specs: list[TenantSpec]
) -> None:
    services, client = gateway
    people, cases = build(services, specs)
    for person in people:
        allowed = [case for case in cases if person.may_read(case)]
        listed = client.get("/api/v1/cases", headers=person.headers)
        assert listed.status_code == 200, listed.text
        assert sorted(c["id"] for c in listed.json()) == sorted(c.id for c in allowed)
        assert {c["tenant_id"] for c in listed.json()} <= {person.user.tenant_id}
        for case in cases:
            read = client.get(f"/api/v1/cases/{case.id}", headers=person.headers)
            media = client.get(f"/api/v1/cases/{case.id}/media", headers=person.headers)
            if person.may_read(case):
                assert read.status_code == 200, read.text
                assert (read.json()["id"], read.json()["tenant_id"]) == (case.id, case.tenant)
                assert read.json()["name"] == case.name
                assert media.status_code == 200, media.text
                assert {m["id"] for m in media.json()} == case.media
                assert {m["case_id"] for m in media.json()} <= {case.id}
            else:
                assert_hidden(read, case)
                assert_hidden(media, case)


def test_a_token_from_login_sees_what_an_issued_token_sees(
    gateway: tuple[ApiServices, TestClient],
) -> None:
    services, client = gateway
    people, cases = build(
        services,
        [
            TenantSpec(("user", "admin"), (CaseSpec(0, (), 1), CaseSpec(1, ((0, "viewer"),), 0))),
            TenantSpec(("admin",), (CaseSpec(0, (), 0),)),
        ],
    )
    human = services.directory.create_user(people[0].user.tenant_id, unique("human"), PASSWORD, "user")
    services.cases.share(Scope.for_tenant(human.tenant_id, "test"), cases[0].id, human.id, "analyst")
    login = client.post("/api/v1/auth/token", data={"username": human.username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    person = Person(human, login.json()["access_token"])
    listed = client.get("/api/v1/cases", headers=person.headers)
    assert [c["id"] for c in listed.json()] == [cases[0].id]
    assert client.get(f"/api/v1/cases/{cases[0].id}/media", headers=person.headers).status_code == 200
    for case in cases[1:]:
        assert_hidden(client.get(f"/api/v1/cases/{case.id}", headers=person.headers), case)
