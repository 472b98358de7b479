"""Runtime configuration of the caller's tenant: read by users, changed by admins (tenant overrides).

A change is stored and audited in one transaction by the configuration service, then announced as
``io.aima.config.changed.v1``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body

from aima.access.policy import Action
from aima.config.schema import SECTIONS, RuntimeConfig
from aima.config.service import InvalidConfig
from functions.api.problems import Problem
from functions.api.schemas import ConfigKey, ConfigValue, ConfigVersion
from functions.api.security import Access, RouteTable, api_route, not_found

router = RouteTable(tags=["config"])


@api_route(router, "GET", "/config", action=Action.CONFIG_READ)
def effective_config(access: Access) -> RuntimeConfig:
    """Every section as it applies to the tenant: its override, else the global value, else the default."""
    return access.services.config.effective(access.subject.tenant_id)


@api_route(router, "GET", "/config/{key}", action=Action.CONFIG_READ)
def get_config(key: ConfigKey, access: Access) -> ConfigValue:
    """One section as it applies to the tenant, and the tenant's own version of it (0: inherited)."""
    _known(key)
    value, version = access.services.config.get(key, access.subject.tenant_id)
    return ConfigValue(key=key, value=value, version=version)


@api_route(router, "PUT", "/config/{key}", action=Action.CONFIG_WRITE)
def set_config(key: ConfigKey, value: Annotated[dict[str, Any], Body()], access: Access) -> ConfigValue:
    """Store ``value`` (the whole section) as the tenant's next version; a bad value is refused with 422
    naming the offending fields."""
    _known(key)
    if _has_nul(value):  # no section takes it, and PostgreSQL cannot store it
        raise Problem(422, "invalid-config", "Invalid configuration", "NUL characters are not allowed.")
    tenant_id, info = access.subject.tenant_id, access.info
    try:
        access.services.config.set(
            key,
            value,
            actor=access.subject.user_id,
            tenant_id=tenant_id,
            audit_tenant_id=tenant_id,
            request_id=info.request_id,
            client=info.client,
            trace_id=info.trace_id,
        )
    except InvalidConfig as exc:
        raise Problem(
            422, "invalid-config", "Invalid configuration", str(exc), extensions={"fields": exc.fields}
        ) from None
    access.mark_audited()  # the service wrote the record in the change's transaction
    stored, version = access.services.config.get(key, tenant_id)
    return ConfigValue(key=key, value=stored, version=version)


@api_route(router, "GET", "/config/{key}/history", action=Action.CONFIG_READ)
def config_history(key: ConfigKey, access: Access) -> list[ConfigVersion]:
    """The tenant's versions of the section, newest first."""
    _known(key)
    return [
        ConfigVersion.model_validate(row)
        for row in access.services.config.history(key, access.subject.tenant_id)
    ]


def _known(key: str) -> None:
    if key not in SECTIONS:
        raise not_found("configuration section")


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
