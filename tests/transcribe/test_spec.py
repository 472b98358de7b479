"""Where the transcribe function takes a forced language from: the case, then the tenant."""

from __future__ import annotations

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.settings import Settings
from aima.storage.cases import CaseRepository
from functions.runtime.deps import Deps
from functions.transcribe.spec import SPEC, build


def test_the_case_language_wins_over_the_tenant_configuration(embedded_settings: Settings) -> None:
    deps = Deps(embedded_settings)
    try:
        db = deps.stores.db
        owner = UserDirectory(db).ensure_local_owner(embedded_settings.bootstrap_tenant)
        scope = Scope.for_tenant(owner.tenant_id, owner.username)
        cases = CaseRepository(db)
        german = str(cases.create(scope, "German case", owner.user_id, language="de")["id"])
        plain = str(cases.create(scope, "Any language", owner.user_id)["id"])
        core = build(deps)
        language_for = core._language_for
        assert language_for(owner.tenant_id, german) == "de"
        assert language_for(owner.tenant_id, plain) is None
        deps.config.set(
            "analysis",
            {"force_language": "en"},
            actor="test",
            tenant_id=owner.tenant_id,
            audit_tenant_id=owner.tenant_id,
        )
        assert language_for(owner.tenant_id, plain) == "en"
        assert language_for(owner.tenant_id, german) == "de"
        assert "model:transcriber" in SPEC.needs
    finally:
        deps.close()
