"""Which tenant the admin commands work in, and the audit chains that belong to no tenant.

* The README's steps (``aima user add root --admin``, ``aima user add alice --role user``, ``aima case
  create ... --owner alice``) put everyone in one tenant, the bootstrap tenant, embedded as in a cluster;
  the embedded local owner acts there too, and is created only while the tenant has no admin.
* Only ``aima user add`` creates a tenant; any other command naming an unknown tenant fails with one
  line and exit 1, creating nothing.
* The ``anonymous`` chain (failed sign-ins and refused tokens, written by the gateway) and the
  ``system`` chain (housekeeping) can be verified and exported: ``--chain anonymous``.
* The case's only owner cannot leave or be demoted from the CLI either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

from aima.access.scope import Scope
from aima.cli import main
from aima.identity.users import LOCAL_OWNER, UserDirectory
from aima.storage.audit import ANONYMOUS_CHAIN, AuditLog
from aima.storage.cases import CaseRepository
from aima.storage.relational import Database
from aima.storage.schema import audit_log, tenants
from functions.api.security import ANONYMOUS_TENANT

PASSWORD = "correct horse battery staple"


@dataclass
class Run:
    code: int
    out: str
    err: str


Aima = Callable[..., Run]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "aima"
    monkeypatch.setenv("AIMA_DATA_DIR", str(folder))
    monkeypatch.setenv("AIMA_NEW_PASSWORD", PASSWORD)
    return folder


@pytest.fixture
def aima(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Aima:
    """Run ``aima ARGS`` in this process through the real entry point (as the console script does)."""

    def run(*args: str) -> Run:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["aima", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def db(data_dir: Path) -> Database:
    return Database(f"sqlite:///{data_dir / 'aima.db'}")


def tenant_names(db: Database) -> list[str]:
    with db.engine.connect() as c:  # maintenance read, outside the guarded sessions
        return sorted(str(name) for name in c.execute(select(tenants.c.name)).scalars())


def failed(run: Run, *fragments: str) -> None:
    """A refused command: exit 1 and exactly one line on stderr, naming ``fragments``."""
    assert run.code == 1, run
    assert run.err.startswith("aima: "), run.err
    assert run.err.count("\n") == 1, run.err
    for fragment in fragments:
        assert fragment in run.err


def test_the_readme_admin_steps_put_everyone_in_the_bootstrap_tenant(aima: Aima, db: Database) -> None:
    assert aima("user", "add", "root", "--admin").code == 0
    assert aima("user", "add", "alice", "--role", "user").code == 0
    assert aima("user", "add", "bob").code == 0
    created = aima("case", "create", "Case 1", "--owner", "alice")
    assert created.code == 0, created.err
    case_id = created.out.strip()
    assert aima("case", "share", case_id, "bob", "--role", "analyst").code == 0

    directory = UserDirectory(db)
    root, alice, bob = (directory.by_username(name) for name in ("root", "alice", "bob"))
    assert root is not None
    assert alice is not None
    assert bob is not None
    assert root.tenant_id == alice.tenant_id == bob.tenant_id == directory.ensure_tenant("default")
    assert tenant_names(db) == ["default"]
    # root, an admin of that tenant, sees alice's case
    admin_scope = Scope.for_tenant(root.tenant_id, root.id)
    assert [row["id"] for row in CaseRepository(db).list(admin_scope)] == [case_id]
    listed = aima("user", "list")
    assert [line.split("\t")[0] for line in listed.out.splitlines()] == ["alice", "bob", "root"]
    assert directory.by_username(LOCAL_OWNER) is None  # an admin exists: no automatic local owner
    assert AuditLog(db).verify(root.tenant_id) == []


def test_after_the_local_owner_acted_the_first_admin_joins_its_tenant(aima: Aima, db: Database) -> None:
    # what `make run` does first: the embedded local owner creates a case
    mine = aima("case", "create", "Mine")
    assert mine.code == 0, mine.err
    first = aima("user", "add", "root", "--admin")
    assert first.code == 0, first.err
    assert aima("user", "add", "alice").code == 0

    directory = UserDirectory(db)
    owner, root, alice = (directory.by_username(name) for name in (LOCAL_OWNER, "root", "alice"))
    assert owner is not None
    assert root is not None
    assert alice is not None
    assert owner.tenant_id == root.tenant_id == alice.tenant_id
    assert tenant_names(db) == ["default"]
    assert mine.out.strip() in aima("case", "list").out
    refused = aima("user", "add", "root2", "--admin")
    failed(refused, "first admin")


def test_only_user_add_creates_a_tenant(aima: Aima, db: Database) -> None:
    assert aima("user", "add", "root", "--admin").code == 0
    for args in (
        ("audit", "verify", "--tenant", "acmee"),
        ("audit", "export", "--tenant", "acmee"),
        ("user", "list", "--tenant", "acmee"),
        ("case", "list", "--tenant", "acmee"),
        ("case", "create", "X", "--owner", "root", "--tenant", "acmee"),
        ("config", "get", "limits", "--tenant", "acmee"),
        ("config", "set", "limits", '{"max_files_per_request": 3}', "--tenant", "acmee"),
    ):
        failed(aima(*args), "no tenant 'acmee'")
    assert tenant_names(db) == ["default"]

    added = aima("user", "add", "carol", "--tenant", "acme")
    assert added.code == 0, added.err
    assert "created tenant 'acme'" in added.out
    assert tenant_names(db) == ["acme", "default"]
    assert aima("user", "list", "--tenant", "acme").out.split("\t")[0] == "carol"
    assert "created tenant" not in aima("user", "add", "dave", "--tenant", "acme").out
    assert aima("audit", "verify", "--tenant", "acme").code == 0


def test_an_unknown_tenant_is_one_line_through_the_console_script(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | {
        "AIMA_DATA_DIR": str(data_dir)
    }
    done = subprocess.run(
        [sys.executable, "-m", "aima.cli", "audit", "verify", "--tenant", "typo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("aima: no tenant 'typo'")
    assert done.stderr.count("\n") == 1


def test_the_anonymous_chain_can_be_verified_and_exported(aima: Aima, db: Database) -> None:
    assert ANONYMOUS_CHAIN == ANONYMOUS_TENANT  # the chain the gateway writes failed sign-ins to
    assert aima("user", "add", "root", "--admin").code == 0
    log = AuditLog(db)
    for reason in ("invalid username or password", "expired"):
        log.record_now(
            tenant_id=ANONYMOUS_CHAIN,
            actor="anonymous",
            action="auth.login",
            outcome="denied",
            client="203.0.113.7",
            detail={"reason": reason},
        )

    verified = aima("audit", "verify", "--chain", "anonymous")
    assert (verified.code, verified.out) == (0, "audit chain intact\n")
    exported = aima("audit", "export", "--chain", "anonymous", "--format", "json")
    assert exported.code == 0, exported.err
    records = json.loads(exported.out)
    assert [(r["tenant_id"], r["action"], r["detail"]["reason"]) for r in records] == [
        ("anonymous", "auth.login", "invalid username or password"),
        ("anonymous", "auth.login", "expired"),
    ]
    csv = aima("audit", "export", "--chain", "anonymous", "--format", "csv")
    assert csv.out.count("\n") == 3
    assert "no tenant" in aima("audit", "verify", "--tenant", "anonymous").err  # a chain, not a tenant
    failed(aima("audit", "verify", "--chain", "anonymous", "--tenant", "default"), "either")

    with db.engine.begin() as c:  # someone edits a failed sign-in away
        c.execute(update(audit_log).where(audit_log.c.tenant_id == ANONYMOUS_CHAIN).values(client="10.0.0.1"))
    broken = aima("audit", "verify", "--chain", "anonymous")
    assert broken.code == 1
    assert "audit chain broken" in broken.err
    assert "was edited" in broken.out


def test_the_only_owner_cannot_leave_or_be_demoted_from_the_cli(aima: Aima) -> None:
    assert aima("user", "add", "root", "--admin").code == 0
    for name in ("alice", "bob"):
        assert aima("user", "add", name).code == 0
    case_id = aima("case", "create", "Case 1", "--owner", "alice").out.strip()

    failed(aima("case", "share", case_id, "alice", "--role", "viewer"), "only owner", "owner first")
    failed(aima("case", "unshare", case_id, "alice"), "only owner")
    failed(aima("case", "unshare", case_id, "bob"), "bob", "no member")
    assert aima("case", "share", case_id, "bob", "--role", "owner").code == 0
    left = aima("case", "unshare", case_id, "alice")
    assert (left.code, left.out) == (0, f"alice is no longer a member of {case_id}\n")
    failed(aima("case", "unshare", case_id, "bob"), "only owner")
