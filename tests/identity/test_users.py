"""The user directory on SQLite and the real PostgreSQL: users, login, bootstrap, local owner, OIDC users."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import delete, select, update

from aima.identity.errors import (
    AuthenticationFailed,
    BootstrapRefused,
    UnknownUser,
    UserExists,
    WeakPassword,
)
from aima.identity.model import GlobalRole
from aima.identity.users import LOCAL_OWNER, UserDirectory
from aima.settings import SettingsError, load_settings
from aima.storage.relational import Database
from aima.storage.schema import users

PASSWORD = "correct horse battery staple"


def name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_create_and_look_up_users(directory: UserDirectory) -> None:
    tenant = directory.ensure_tenant("acme")
    assert directory.ensure_tenant("acme") == tenant
    other = directory.ensure_tenant("globex")
    alice = directory.create_user(tenant, "alice", PASSWORD, "user", email="alice@example.org")
    bob = directory.create_user(tenant, "bob", None, GlobalRole.GUEST)
    directory.create_user(other, "carol", PASSWORD, GlobalRole.ADMIN)

    assert alice.role is GlobalRole.USER
    assert alice.email == "alice@example.org"
    assert alice.kind == "human"
    assert not alice.disabled
    assert "password_hash" not in {f.name for f in dataclasses.fields(alice)}
    assert directory.get(alice.id) == alice
    assert directory.by_username("bob") == bob
    assert directory.get("no-such-id") is None
    assert [u.username for u in directory.list_users(tenant)] == ["alice", "bob"]


def test_usernames_are_unique(directory: UserDirectory) -> None:
    tenant = directory.ensure_tenant("acme")
    directory.create_user(tenant, "alice", PASSWORD, "user")
    with pytest.raises(UserExists):
        directory.create_user(directory.ensure_tenant("globex"), "alice", PASSWORD, "admin")


def test_weak_passwords_are_refused_for_humans(directory: UserDirectory) -> None:
    tenant = directory.ensure_tenant("acme")
    with pytest.raises(WeakPassword):
        directory.create_user(tenant, "alice", "short", "user")
    assert directory.by_username("alice") is None
    robot = directory.create_user(tenant, "robot", None, "user", kind="service")
    assert robot.kind == "service"


def test_authenticate_refuses_unknown_user_wrong_password_and_disabled_user_alike(
    directory: UserDirectory,
) -> None:
    tenant = directory.ensure_tenant("acme")
    alice = directory.create_user(tenant, "alice", PASSWORD, "user")

    principal = directory.authenticate("alice", PASSWORD)
    assert (principal.user_id, principal.tenant_id, principal.username) == (alice.id, tenant, "alice")
    assert principal.role is GlobalRole.USER
    assert (principal.kind, principal.auth) == ("human", "password")

    with pytest.raises(AuthenticationFailed) as unknown:
        directory.authenticate("mallory", PASSWORD)
    with pytest.raises(AuthenticationFailed) as wrong:
        directory.authenticate("alice", PASSWORD + "!")
    assert str(unknown.value) == str(wrong.value)

    directory.disable(alice.id)
    assert directory.get(alice.id) == dataclasses.replace(alice, disabled=True)
    with pytest.raises(AuthenticationFailed):
        directory.authenticate("alice", PASSWORD)
    with pytest.raises(AuthenticationFailed):
        directory.principal(alice.id)
    with pytest.raises(UnknownUser):
        directory.disable("no-such-id")


def test_login_rehashes_a_hash_with_outdated_parameters(directory: UserDirectory, db: Database) -> None:
    alice = directory.create_user(directory.ensure_tenant("acme"), "alice", PASSWORD, "user")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        s.execute(update(users).where(users.c.id == alice.id).values(password_hash=weak))

    directory.authenticate("alice", PASSWORD)

    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        stored = s.execute(select(users.c.password_hash).where(users.c.id == alice.id)).scalar_one()
    assert stored != weak
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert directory.authenticate("alice", PASSWORD).user_id == alice.id


def test_bootstrap_admin_only_on_an_empty_database(directory: UserDirectory) -> None:
    admin = directory.bootstrap_admin("root", PASSWORD, "default")
    assert admin.role is GlobalRole.ADMIN
    assert directory.authenticate("root", PASSWORD).role is GlobalRole.ADMIN
    with pytest.raises(BootstrapRefused):
        directory.bootstrap_admin("root2", PASSWORD, "default")
    assert directory.by_username("root2") is None


def test_bootstrap_is_refused_when_any_user_exists(directory: UserDirectory) -> None:
    directory.create_user(directory.ensure_tenant("acme"), "alice", PASSWORD, "guest")
    with pytest.raises(BootstrapRefused):
        directory.bootstrap_admin("root", PASSWORD, "default")


def test_concurrent_bootstraps_create_exactly_one_admin(directory: UserDirectory, db: Database) -> None:
    for _ in range(8):
        with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
            s.execute(delete(users))
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def bootstrap(
            username: str, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes
        ) -> None:
            barrier.wait()
            try:
                directory.bootstrap_admin(username, PASSWORD, "default")
                outcomes.append("created")
            except BootstrapRefused:
                outcomes.append("refused")

        threads = [threading.Thread(target=bootstrap, args=(f"root-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["created", "refused", "refused", "refused"]
        assert len(directory.list_users(directory.ensure_tenant("default"))) == 1


def test_bootstrap_from_settings(directory: UserDirectory, tmp_path: Path) -> None:
    unset = load_settings(data_dir=tmp_path)
    assert directory.bootstrap_from_settings(unset) is None
    with pytest.raises(SettingsError, match="AIMA_BOOTSTRAP_ADMIN_PASSWORD"):
        directory.bootstrap_from_settings(load_settings(data_dir=tmp_path, bootstrap_admin_username="root"))
    assert directory.by_username("root") is None

    settings = load_settings(
        data_dir=tmp_path,
        bootstrap_admin_username="root",
        bootstrap_admin_password=PASSWORD,
        bootstrap_tenant="hq",
    )
    admin = directory.bootstrap_from_settings(settings)
    assert admin is not None
    assert admin.role is GlobalRole.ADMIN
    assert admin.tenant_id == directory.ensure_tenant("hq")
    assert directory.bootstrap_from_settings(settings) is None  # a restart changes nothing


def test_local_owner_is_a_passwordless_admin_that_cannot_log_in(directory: UserDirectory) -> None:
    owner = directory.ensure_local_owner()
    assert owner.role is GlobalRole.ADMIN
    assert (owner.username, owner.kind, owner.auth) == (LOCAL_OWNER, "human", "local")
    assert owner.tenant_id == directory.ensure_tenant("local")
    assert directory.ensure_local_owner() == owner
    with pytest.raises(AuthenticationFailed):
        directory.authenticate(LOCAL_OWNER, "")
    with pytest.raises(AuthenticationFailed):
        directory.authenticate(LOCAL_OWNER, PASSWORD)


def test_external_users_are_provisioned_once_and_follow_the_issuers_role(directory: UserDirectory) -> None:
    issuer = "https://idp.example.org"
    first = directory.provision_external(issuer, "sub-1", "dora", "user", "partners")
    assert (first.username, first.role, first.auth) == ("dora", GlobalRole.USER, "oidc")
    assert first.tenant_id == directory.ensure_tenant("partners")

    again = directory.provision_external(issuer, "sub-1", "dora", GlobalRole.ADMIN, "partners")
    assert again.user_id == first.user_id
    assert again.role is GlobalRole.ADMIN
    record = directory.get(first.user_id)
    assert record is not None
    assert (record.issuer, record.subject, record.role) == (issuer, "sub-1", GlobalRole.ADMIN)

    directory.disable(first.user_id)
    with pytest.raises(AuthenticationFailed):
        directory.provision_external(issuer, "sub-1", "dora", "user", "partners")


def test_an_external_identity_never_takes_over_a_local_account_by_name(directory: UserDirectory) -> None:
    local = directory.create_user(directory.ensure_tenant("acme"), "erin", PASSWORD, "user")
    external = directory.provision_external("https://idp.example.org", "sub-2", "erin", "admin", "acme")
    assert external.user_id != local.id
    assert external.username.startswith("erin#")
    assert directory.authenticate("erin", PASSWORD).role is GlobalRole.USER


# --- the remembered principal (the gateway's AIMA_ACCESS_CACHE_TTL) -------------------------------


def test_a_remembered_principal_follows_changes_made_through_the_directory(db: Database) -> None:
    directory = UserDirectory(db, principal_ttl=60)
    alice = directory.create_user(directory.ensure_tenant("acme"), name(), None, "user")
    assert directory.principal(alice.id).role is GlobalRole.USER
    with db.engine.begin() as s:  # another process changes the role: not seen within the TTL
        s.execute(update(users).where(users.c.id == alice.id).values(role="guest"))
    assert directory.principal(alice.id).role is GlobalRole.USER
    directory.disable(alice.id)  # through this directory: at once
    with pytest.raises(AuthenticationFailed):
        directory.principal(alice.id)


def test_a_change_made_elsewhere_shows_once_the_ttl_passed(db: Database) -> None:
    directory = UserDirectory(db, principal_ttl=0.3)
    alice = directory.create_user(directory.ensure_tenant("acme"), name(), None, "user")
    assert directory.principal(alice.id).role is GlobalRole.USER
    with db.engine.begin() as s:
        s.execute(update(users).where(users.c.id == alice.id).values(disabled=True))
    time.sleep(0.35)
    with pytest.raises(AuthenticationFailed):
        directory.principal(alice.id)


def test_an_external_role_change_at_login_takes_effect_at_once(db: Database) -> None:
    directory = UserDirectory(db, principal_ttl=60)
    first = directory.provision_external("https://idp.example", "sub-1", "erin", "user", "acme")
    assert directory.principal(first.user_id).role is GlobalRole.USER
    directory.provision_external("https://idp.example", "sub-1", "erin", "guest", "acme")
    assert directory.principal(first.user_id).role is GlobalRole.GUEST
