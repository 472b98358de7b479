"""A case's language (issue #14) in the case repository: set at creation, changed, cleared and kept
by `CaseRepository.update`, refused when it is no ISO 639 code, audited in the change's transaction.
On SQLite and the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from aima.access.scope import Scope
from aima.domain import Case
from aima.identity.users import UserDirectory
from aima.storage.cases import KEEP, CaseRepository
from aima.storage.relational import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, sqlite_db: Database) -> Iterator[Database]:
    if request.param == "sqlite":
        yield sqlite_db
        return
    database = Database(request.getfixturevalue("pg_database"))
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def owned(db: Database) -> tuple[CaseRepository, Scope, str]:
    """The repository, a tenant-wide scope and an owner of the tenant."""
    directory = UserDirectory(db)
    tenant = directory.ensure_tenant(f"acme-{uuid.uuid4().hex[:8]}")
    owner = directory.create_user(tenant, f"owner-{uuid.uuid4().hex[:8]}", None, "user").id
    return CaseRepository(db), Scope.for_tenant(tenant, "test"), owner


def language_of(repo: CaseRepository, scope: Scope, case_id: str) -> Any:
    row = repo.get(scope, case_id)
    assert row is not None
    return row["language"]


def test_a_case_is_created_with_or_without_a_language(owned: tuple[CaseRepository, Scope, str]) -> None:
    repo, scope, owner = owned
    forced = repo.create(scope, "Interview", owner, language="de")
    detected = repo.create(scope, "Street", owner)

    assert (forced["language"], detected["language"]) == ("de", None)
    assert language_of(repo, scope, str(forced["id"])) == "de"
    listed = {row["id"]: row["language"] for row in repo.list(scope)}
    assert listed == {forced["id"]: "de", detected["id"]: None}
    domain = {key: value for key, value in forced.items() if key != "updated_at"}
    assert Case.model_validate(domain).language == "de"


def test_update_sets_changes_clears_and_keeps_the_language(owned: tuple[CaseRepository, Scope, str]) -> None:
    repo, scope, owner = owned
    case_id = str(repo.create(scope, "Interview", owner)["id"])
    audited: list[Any] = []

    assert repo.update(scope, case_id, language="gsw", audit=audited.append)
    assert language_of(repo, scope, case_id) == "gsw"
    assert repo.update(scope, case_id, name="Interview II")  # the language is kept
    assert language_of(repo, scope, case_id) == "gsw"
    assert repo.update(scope, case_id, name="Interview III", language="en", audit=audited.append)
    row = repo.get(scope, case_id)
    assert row is not None
    assert (row["name"], row["language"]) == ("Interview III", "en")
    assert repo.rename(scope, case_id, "Interview IV")
    assert language_of(repo, scope, case_id) == "en"
    assert repo.update(scope, case_id, language=None, audit=audited.append)
    assert language_of(repo, scope, case_id) is None
    assert repo.update(scope, case_id, name=KEEP, language=KEEP, audit=audited.append)  # nothing to change
    assert len(audited) == 4  # each hook ran once, in its change's transaction

    missing = str(uuid.uuid4())
    assert not repo.update(scope, missing, language="de", audit=audited.append)
    assert not repo.update(scope, missing, audit=audited.append)
    assert len(audited) == 4


def test_a_case_outside_the_scope_keeps_its_language(owned: tuple[CaseRepository, Scope, str]) -> None:
    repo, scope, owner = owned
    case_id = str(repo.create(scope, "Interview", owner, language="de")["id"])
    elsewhere = Scope.for_tenant(f"other-{uuid.uuid4().hex[:8]}", "test")

    assert not repo.update(elsewhere, case_id, language="fr")
    assert repo.get(elsewhere, case_id) is None
    assert language_of(repo, scope, case_id) == "de"


@pytest.mark.parametrize("code", ["", "d", "deut", "DE", "de-CH", "de ", "1e", "ü"])
def test_anything_but_an_iso_639_code_is_refused(owned: tuple[CaseRepository, Scope, str], code: str) -> None:
    repo, scope, owner = owned
    with pytest.raises(ValueError, match="ISO 639"):
        repo.create(scope, "Interview", owner, language=code)
    case_id = str(repo.create(scope, "Interview", owner, language="de")["id"])
    with pytest.raises(ValueError, match="ISO 639"):
        repo.update(scope, case_id, language=code)
    assert language_of(repo, scope, case_id) == "de"
    with pytest.raises(ValidationError, match="language"):
        Case(tenant_id=scope.tenant_id, name="Interview", language=code)
