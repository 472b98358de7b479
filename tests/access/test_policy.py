"""The authorisation policy's full decision table, the action kinds, sharing rules and scopes."""

from __future__ import annotations

import itertools

import pytest

from aima.access import ACTION_KIND, Action, Resource, Scope, Subject, decide, shareable_role
from aima.access.policy import CaseRole, Role

# The table, written out by hand rather than derived from the policy module
USER_TENANT = {"case.create", "case.list", "config.read", "authenticated", "public"}
GUEST_TENANT = {"case.list", "authenticated", "public"}
VIEWER = {"case.read", "media.read"}
ANALYST = VIEWER | {"case.update", "media.upload", "analysis.run", "case.export"}
OWNER = ANALYST | {"case.share", "case.delete", "media.delete"}
ALL = {action.value for action in Action}
ADMIN_ONLY = {"user.list", "user.create", "user.disable", "audit.read", "audit.export", "config.write"}
CASE_ROLES: list[CaseRole | None] = [None, "viewer", "analyst", "owner"]
ROLES: list[Role] = ["admin", "user", "guest"]


def expected(role: Role, case_role: CaseRole | None) -> set[str]:
    if role == "admin":
        return ALL
    if role == "user":
        return USER_TENANT | {None: set(), "viewer": VIEWER, "analyst": ANALYST, "owner": OWNER}[case_role]
    return GUEST_TENANT | (VIEWER if case_role else set())  # a guest member counts as viewer at most


def test_the_table_is_complete() -> None:
    assert {"public", "authenticated"} < ALL
    assert len(ALL) == 20
    assert not ADMIN_ONLY & (USER_TENANT | OWNER)


@pytest.mark.parametrize(
    ("role", "case_role", "action"), list(itertools.product(ROLES, CASE_ROLES, list(Action)))
)
def test_decision_on_a_case_of_the_own_tenant(role: Role, case_role: CaseRole | None, action: Action) -> None:
    subject = Subject("u1", "t1", role)
    decision = decide(subject, action, Resource("t1", "c1", case_role))
    assert decision.allowed is (action.value in expected(role, case_role))
    assert decision.reason


@pytest.mark.parametrize(("role", "action"), list(itertools.product(ROLES, list(Action))))
def test_decision_without_a_case(role: Role, action: Action) -> None:
    """Tenant-level requests: case actions need a case, except for admins."""
    subject = Subject("u1", "t1", role, "service")
    allowed = action.value in expected(role, None)
    assert decide(subject, action, Resource("t1")).allowed is allowed
    assert decide(subject, action).allowed is allowed  # the resource defaults to the own tenant


def test_a_case_role_without_a_case_id_grants_nothing() -> None:
    subject = Subject("u1", "t1", "user")
    assert not decide(subject, Action.CASE_READ, Resource("t1", None, "owner")).allowed


@pytest.mark.parametrize(
    ("role", "case_role", "action"), list(itertools.product(ROLES, CASE_ROLES, list(Action)))
)
def test_another_tenant_is_denied_whatever_the_role(
    role: Role, case_role: CaseRole | None, action: Action
) -> None:
    decision = decide(Subject("u1", "t1", role), action, Resource("t2", "c1", case_role))
    if action is Action.PUBLIC:
        assert decision.allowed
    else:
        assert not decision.allowed
        assert decision.reason == "different tenant"


@pytest.mark.parametrize("action", list(Action))
def test_without_a_subject_only_public_actions_are_allowed(action: Action) -> None:
    decision = decide(None, action, Resource("t1", "c1", "owner"))
    assert decision.allowed is (action is Action.PUBLIC)
    assert bool(decision) is decision.allowed


def test_every_action_has_a_kind() -> None:
    assert set(ACTION_KIND) == set(Action)
    assert ACTION_KIND[Action.PUBLIC] == "public"
    assert ACTION_KIND[Action.AUTHENTICATED] == "auth"
    assert {a for a, kind in ACTION_KIND.items() if kind == "delete"} == {
        Action.CASE_DELETE,
        Action.MEDIA_DELETE,
    }
    assert {a for a, kind in ACTION_KIND.items() if kind == "export"} == {
        Action.CASE_EXPORT,
        Action.AUDIT_EXPORT,
    }
    reads = {a.value for a, kind in ACTION_KIND.items() if kind == "read"}
    assert reads == {"case.list", "case.read", "media.read", "user.list", "audit.read", "config.read"}


@pytest.mark.parametrize(
    ("role", "case_role", "allowed"),
    [
        ("admin", "owner", True),
        ("user", "owner", True),
        ("user", "analyst", True),
        ("user", "viewer", True),
        ("guest", "viewer", True),
        ("guest", "analyst", False),
        ("guest", "owner", False),
        ("user", "admin", False),
        ("user", "superuser", False),
    ],
)
def test_shareable_role(role: Role, case_role: str, allowed: bool) -> None:
    assert shareable_role(role, case_role) is allowed


def test_scopes() -> None:
    case_scope = Scope.for_case("t1", "c1", "worker")
    assert case_scope.case_ids == frozenset({"c1"})
    assert case_scope.allows_case("c1")
    assert not case_scope.allows_case("c2")
    tenant_scope = Scope.for_tenant("t1", "system")
    assert tenant_scope.case_ids is None
    assert tenant_scope.allows_case("anything")

    admin = Scope.for_subject(Subject("a", "t1", "admin"), ["c1"])
    assert admin == Scope("t1", None, "a")
    user = Scope.for_subject(Subject("u", "t1", "user"), {"c1": "owner", "c2": "viewer"})
    assert user == Scope("t1", frozenset({"c1", "c2"}), "u")
    assert Scope.for_subject(Subject("g", "t1", "guest"), []).case_ids == frozenset()
