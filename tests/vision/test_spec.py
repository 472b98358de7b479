"""Where the vision function takes the case's context prompt from: the tenant's runtime configuration
(``analysis.context_prompt``; cases have no field for it)."""

from __future__ import annotations

from aima.identity.users import UserDirectory
from aima.settings import Settings
from events.catalogue import VisionDescribed
from functions.runtime.deps import Deps
from functions.runtime.spec import discover
from functions.vision.spec import SPEC, build


def test_the_context_prompt_comes_from_the_tenant_configuration(embedded_settings: Settings) -> None:
    deps = Deps(embedded_settings)
    try:
        owner = UserDirectory(deps.stores.db).ensure_local_owner(embedded_settings.bootstrap_tenant)
        core = build(deps)
        context_for = core._context_for
        assert context_for(owner.tenant_id, "case-1") is None
        prompt = "A missing person; the analyst asks about restraints and injuries."
        deps.config.set(
            "analysis",
            {"context_prompt": prompt},
            actor="test",
            tenant_id=owner.tenant_id,
            audit_tenant_id=owner.tenant_id,
        )
        assert context_for(owner.tenant_id, "case-1") == prompt
        assert core._min_confidence_for(owner.tenant_id) == 0.5
    finally:
        deps.close()


def test_the_spec() -> None:
    assert (SPEC.name, SPEC.port, SPEC.analysis) == ("vision", 8088, True)
    assert "model:vision_describer" in SPEC.needs
    assert SPEC.emits == (VisionDescribed,)
    assert discover()["vision"] is SPEC
