"""Admin commands: users, cases and sharing, media listing, the audit log, runtime configuration.

Which tenant a command works in and who acts there: `aima.cli.context`. Only ``aima user add`` creates
a tenant. ``aima audit verify|export --chain anonymous|system`` read the audit chains of no tenant
(failed authentications; housekeeping such as the retention sweep's removal of leftovers).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from aima.access.policy import shareable_role
from aima.access.scope import Scope
from aima.cli.context import Kernel
from aima.config.schema import SECTIONS
from aima.config.service import InvalidConfig
from aima.identity.errors import BootstrapRefused, UserExists, WeakPassword
from aima.settings import load_settings
from aima.storage.audit import CHAINS, SYSTEM_CHAIN
from aima.storage.cases import LastOwner, NotFound

TENANT = click.option(
    "--tenant", default=None, help="Tenant name (default: the bootstrap tenant, AIMA_BOOTSTRAP_TENANT)."
)
CHAIN = click.option(
    "--chain",
    type=click.Choice(CHAINS),
    default=None,
    help="A chain of no tenant instead: anonymous (failed authentications) or system (housekeeping).",
)


class CommandFailed(click.ClickException):
    """A refused or failed admin operation (exit 1, one line)."""


@contextmanager
def kernel(tenant: str | None, *, create_tenant: bool = False) -> Iterator[Kernel]:
    k = Kernel(load_settings(), tenant, create_tenant=create_tenant)
    try:
        yield k
    finally:
        k.close()


def _password(service: bool) -> str | None:
    """The new user's password: from AIMA_NEW_PASSWORD (scripts) or a hidden prompt; none for services."""
    if service:
        return None
    given = os.environ.get("AIMA_NEW_PASSWORD")
    if given:
        return given
    if not sys.stdin.isatty():
        raise CommandFailed("no password: set AIMA_NEW_PASSWORD or run in a terminal")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, sort_keys=True))


# --- users -----------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Add, list and disable users."""


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "user", "guest"]), default="user")
@click.option("--admin", "first_admin", is_flag=True, help="Create the first admin (empty database only).")
@click.option("--service", is_flag=True, help="A service account (no password; gets tokens from an admin).")
@click.option("--email", default=None)
@TENANT
def user_add(
    username: str, role: str, first_admin: bool, service: bool, email: str | None, tenant: str | None
) -> None:
    """Add a user. The password comes from a prompt or AIMA_NEW_PASSWORD; there is no default.

    The only command that creates a tenant: --tenant (default: the bootstrap tenant) is created if new.
    """
    with kernel(tenant, create_tenant=True) as k:
        try:
            if first_admin:
                password = _password(False)
                assert password is not None
                k.created_tenant = k.directory.tenant_id(k.tenant) is None
                record = k.directory.bootstrap_admin(username, password, k.tenant)
                k.audit.record_now(
                    tenant_id=record.tenant_id,
                    actor="cli:bootstrap",
                    action="user.create",
                    outcome="allowed",
                    object=f"user/{record.id}",
                    detail={"role": "admin", "via": "cli"},
                )
            else:
                record = k.directory.create_user(
                    k.actor.tenant_id,
                    username,
                    _password(service),
                    role,
                    email=email,
                    kind="service" if service else "human",
                )
                k.record("user.create", object=f"user/{record.id}")
        except (UserExists, BootstrapRefused, WeakPassword) as exc:
            raise CommandFailed(str(exc)) from exc
        if k.created_tenant:
            click.echo(f"created tenant {k.tenant!r}")
        click.echo(f"created {record.role} {record.username} ({record.id})")


@user.command("list")
@TENANT
def user_list(tenant: str | None) -> None:
    """List the tenant's users."""
    with kernel(tenant) as k:
        records = k.directory.list_users(k.actor.tenant_id)
        k.record("user.list")
        for r in records:
            state = "disabled" if r.disabled else "active"
            click.echo(f"{r.username}\t{r.role}\t{r.kind}\t{state}\t{r.id}")


@user.command("disable")
@click.argument("username")
@TENANT
def user_disable(username: str, tenant: str | None) -> None:
    """Disable a user and revoke their sessions."""
    with kernel(tenant) as k:
        record = k.directory.by_username(username)
        if record is None or record.tenant_id != k.actor.tenant_id:
            raise CommandFailed(f"no user {username!r} in this tenant")
        k.directory.disable(record.id)
        k.record("user.disable", object=f"user/{record.id}")
        click.echo(f"disabled {username}")


# --- cases and media -------------------------------------------------------------------------


@click.group()
def case() -> None:
    """Create, list and share cases."""


@case.command("create")
@click.argument("name")
@click.option("--owner", default=None, help="Owner's username (default: the acting local owner).")
@click.option("--retention-days", type=click.IntRange(min=1), default=None)
@click.option(
    "--language",
    default=None,
    metavar="CODE",
    help="Transcribe the case's speech in this language (ISO 639-1/639-3 code, e.g. de) "
    "instead of detecting it.",
)
@TENANT
def case_create(
    name: str, owner: str | None, retention_days: int | None, language: str | None, tenant: str | None
) -> None:
    """Create a case; its owner is --owner or the local owner."""
    with kernel(tenant) as k:
        owner_id = _user_id(k, owner) if owner else k.actor.user_id
        if owner_id is None:
            raise CommandFailed(f"--owner is required: the CLI acts as {k.actor.name}, who owns no cases")
        scope = Scope.for_tenant(k.actor.tenant_id, k.actor.name)
        try:
            row = k.cases.create(scope, name, owner_id, retention_days, language=language)
        except (NotFound, ValueError) as exc:
            raise CommandFailed(str(exc)) from exc
        k.record("case.create", object=f"case/{row['id']}", case_id=str(row["id"]))
        click.echo(str(row["id"]))


@case.command("list")
@TENANT
def case_list(tenant: str | None) -> None:
    """List the tenant's cases."""
    with kernel(tenant) as k:
        rows = k.cases.list(Scope.for_tenant(k.actor.tenant_id, k.actor.name))
        k.record("case.list")
        for row in rows:
            click.echo(f"{row['id']}\t{row['name']}\t{row['status']}")


@case.command("share")
@click.argument("case_id")
@click.argument("username")
@click.option("--role", type=click.Choice(["owner", "analyst", "viewer"]), required=True)
@TENANT
def case_share(case_id: str, username: str, role: str, tenant: str | None) -> None:
    """Give USERNAME a role on CASE_ID (guests can only be viewers)."""
    with kernel(tenant) as k:
        target = k.directory.by_username(username)
        if target is None or target.tenant_id != k.actor.tenant_id:
            raise CommandFailed(f"no user {username!r} in this tenant")
        if not shareable_role(target.role.value, role):
            raise CommandFailed(f"a {target.role.value} can only be a viewer")
        try:
            k.cases.share(Scope.for_tenant(k.actor.tenant_id, k.actor.name), case_id, target.id, role)
        except (NotFound, ValueError, LastOwner) as exc:
            raise CommandFailed(str(exc)) from exc
        k.record("case.share", object=f"case/{case_id}/members/{target.id}", case_id=case_id)
        click.echo(f"{username} is {role} of {case_id}")


@case.command("unshare")
@click.argument("case_id")
@click.argument("username")
@TENANT
def case_unshare(case_id: str, username: str, tenant: str | None) -> None:
    """End USERNAME's membership of CASE_ID (the only owner cannot leave: make another member owner)."""
    with kernel(tenant) as k:
        scope = Scope.for_tenant(k.actor.tenant_id, k.actor.name)
        user_id = _user_id(k, username)
        if k.cases.get(scope, case_id) is None:
            raise CommandFailed(f"no case {case_id}")
        try:
            ended = k.cases.unshare(scope, case_id, user_id)
        except LastOwner as exc:
            raise CommandFailed(str(exc)) from exc
        if not ended:
            raise CommandFailed(f"{username} is no member of {case_id}")
        k.record("case.unshare", object=f"case/{case_id}/members/{user_id}", case_id=case_id)
        click.echo(f"{username} is no longer a member of {case_id}")


@click.group()
def media() -> None:
    """List a case's media."""


@media.command("list")
@click.argument("case_id")
@TENANT
def media_list(case_id: str, tenant: str | None) -> None:
    """The files of a case with status, type, size and checksum."""
    with kernel(tenant) as k:
        scope = Scope.for_case(k.actor.tenant_id, case_id, k.actor.name)
        if k.cases.get(scope, case_id) is None:
            raise CommandFailed(f"no case {case_id}")
        files = k.media.list(scope, case_id)
        k.record("media.read", object=f"case/{case_id}/media", case_id=case_id)
        for file in files:
            reason = f"\t{file.failure_reason}" if file.failure_reason else ""
            click.echo(
                f"{file.id}\t{file.status.value}\t{file.kind.value if file.kind else '-'}\t{file.size}\t"
                f"{file.sha256}\t{file.filename or ''}{reason}"
            )


def _user_id(k: Kernel, username: str) -> str:
    record = k.directory.by_username(username)
    if record is None or record.tenant_id != k.actor.tenant_id:
        raise CommandFailed(f"no user {username!r} in this tenant")
    return record.id


# --- audit -----------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """Verify and export the tamper-evident audit log."""


def _chain_id(k: Kernel, chain: str | None) -> str:
    """The chain a command reads: ``chain`` (of no tenant) or the tenant's (`UnknownTenant`)."""
    if chain is None:
        return k.actor.tenant_id
    if k.tenant_name is not None:
        raise CommandFailed("give either --tenant or --chain, not both")
    return chain


@audit.command("verify")
@TENANT
@CHAIN
@click.option(
    "--against",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A report's report.json: check its signature and that the chain still holds the head it recorded.",
)
def audit_verify(tenant: str | None, chain: str | None, report_path: Path | None) -> None:
    """Check a hash chain (the tenant's, or --chain); exit 1 and list the problems if a record was
    edited or removed. With --against, also that the chain was not rewritten since the report."""
    if report_path is not None:
        _verify_against(tenant, report_path)
        return
    with kernel(tenant) as k:
        problems = k.audit.verify(_chain_id(k, chain))
        if problems:
            for problem in problems:
                click.echo(problem)
            raise CommandFailed(f"audit chain broken: {len(problems)} problem(s)")
        click.echo("audit chain intact")


def _verify_against(tenant: str | None, report_path: Path) -> None:
    from pydantic import ValidationError

    from aima.identity.keys import KeyRing
    from aima.reports.custody import CustodyError, verify_against
    from aima.reports.model import CaseReport

    try:
        report = CaseReport.model_validate_json(report_path.read_bytes())
    except OSError as exc:
        raise CommandFailed(f"cannot read {report_path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise CommandFailed(f"{report_path} is not an AIMA report: {exc.errors()[0]['msg']}") from None
    with kernel(tenant) as k:
        if report.tenant_id != k.actor.tenant_id:
            raise CommandFailed("the report belongs to another tenant")
        keys = KeyRing.from_settings(k.settings, k.stores.db)
        try:
            problems = verify_against(report, keys, k.audit)
        except CustodyError as exc:
            raise CommandFailed(f"report v{report.version} cannot be trusted: {exc}") from None
        head = report.custody.audit_head
        if problems:
            for problem in problems:
                click.echo(problem)
            raise CommandFailed(
                f"audit chain does not match report v{report.version}: {len(problems)} problem(s)"
            )
        click.echo(
            f"report v{report.version} signature valid; audit chain intact and unchanged up to record "
            f"{head.seq}, the head when the report was made"
        )


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.option("--case", "case_id", default=None)
@click.option("--actor", default=None)
@TENANT
@CHAIN
def audit_export(
    fmt: str, case_id: str | None, actor: str | None, tenant: str | None, chain: str | None
) -> None:
    """Stream the audit log (the tenant's, or --chain; filtered by case and actor) to stdout.

    The export is itself recorded: in the tenant's chain, or for --chain in the system chain.
    """
    with kernel(tenant) as k:
        filters = {key: value for key, value in (("case_id", case_id), ("actor", actor)) if value}
        chain_id = _chain_id(k, chain)
        if chain is None:
            k.record("audit.export", object="audit", case_id=case_id)
        else:
            k.record_in(SYSTEM_CHAIN, "audit.export", object=f"audit/{chain}", chain=chain)
        for chunk in k.audit.export(chain_id, fmt, **filters):  # type: ignore[arg-type]
            click.echo(chunk, nl=False)


# --- configuration ---------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Read and change runtime settings (analysis defaults, thresholds, limits, ...)."""


GLOBAL = click.option("--global", "is_global", is_flag=True, help="The global default, not the tenant's.")


@config.command("get")
@click.argument("key", required=False, type=click.Choice(sorted(SECTIONS)))
@TENANT
def config_get(key: str | None, tenant: str | None) -> None:
    """The effective configuration (or one section) of the tenant."""
    with kernel(tenant) as k:
        effective = k.config.effective(k.actor.tenant_id).model_dump(mode="json")
        _echo_json(effective[key] if key else effective)


@config.command("set")
@click.argument("key", type=click.Choice(sorted(SECTIONS)))
@click.argument("value")
@GLOBAL
@TENANT
def config_set(key: str, value: str, is_global: bool, tenant: str | None) -> None:
    """Store VALUE (a JSON object) as the next version of section KEY."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CommandFailed(f"VALUE is not JSON: {exc.msg} at position {exc.pos}") from exc
    with kernel(tenant) as k:
        try:
            change = k.config.set(
                key,
                parsed,
                actor=k.actor.name,
                tenant_id=None if is_global else k.actor.tenant_id,
                audit_tenant_id=k.actor.tenant_id,
            )
        except InvalidConfig as exc:
            raise CommandFailed(str(exc)) from exc
        level = "global" if is_global else "tenant"
        click.echo(f"{key} is now version {change.version} ({level})")


@config.command("history")
@click.argument("key", type=click.Choice(sorted(SECTIONS)))
@GLOBAL
@TENANT
def config_history(key: str, is_global: bool, tenant: str | None) -> None:
    """Every stored version of a section, newest first."""
    with kernel(tenant) as k:
        _echo_json(k.config.history(key, None if is_global else k.actor.tenant_id))
