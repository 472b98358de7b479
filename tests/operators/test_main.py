"""``kopf run -m operators.analysisjob.main``: the module imports, registers its handlers for
``aima.io/v1alpha1/analysisjobs`` in Kopf's default registry, configures Kopf and builds its client."""

from __future__ import annotations

import logging
from pathlib import Path

import kopf
import pytest

import operators.analysisjob.main as main
from aima.domain import JobPhase
from operators.analysisjob import handlers
from operators.analysisjob.client import JobClient
from operators.analysisjob.resource import FINALIZER, GROUP, PLURAL, STORAGE_PREFIX, VERSION
from tests.operators.gateway import Gateway
from tests.operators.support import analysis_job

LOG = logging.getLogger(__name__)


def test_the_handlers_are_registered_for_analysisjobs() -> None:
    registry = kopf.get_default_registry()
    changing = {handler.id: handler for handler in registry._changing.get_all_handlers()}
    spawning = {handler.id: handler for handler in registry._spawning.get_all_handlers()}
    assert set(changing) == {
        "submit",
        "immutable",
        "approve-by-annotation/metadata.annotations.aima.io/approved",
        "approve-by-spec/spec.approval.approved",
        "cancel",
    }
    assert set(spawning) == {"poll"}
    for handler in [*changing.values(), *spawning.values()]:
        selector = handler.selector
        assert selector is not None
        assert (selector.group, selector.version, selector.plural) == (GROUP, VERSION, PLURAL)
    assert changing["cancel"].requires_finalizer
    timer = spawning["poll"]
    assert timer.interval == main.POLL_SECONDS == 5.0
    assert timer.when is handlers.polling
    activities = {handler.id for handler in registry._activities.get_all_handlers()}
    assert {"startup", "cleanup"} <= activities


def test_kopf_is_configured_for_the_declared_permissions() -> None:
    settings = kopf.OperatorSettings()
    main.configure(settings)
    assert settings.peering.standalone
    assert settings.scanning.disabled
    assert settings.posting.level == logging.WARNING  # not an event per timer run
    assert settings.persistence.finalizer == FINALIZER
    progress = settings.persistence.progress_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == STORAGE_PREFIX
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert diffbase.prefix == STORAGE_PREFIX


async def test_startup_builds_the_client_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("a-service-token\n")
    monkeypatch.setenv("AIMA_OPERATOR_API_URL", "http://aima-api:8080")
    monkeypatch.setenv("AIMA_OPERATOR_TOKEN_FILE", str(token))
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    await main.startup(settings=settings, memo=memo)
    assert isinstance(memo["client"], JobClient)
    assert settings.peering.standalone
    await main.cleanup(memo=memo)


async def test_startup_stops_on_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMA_OPERATOR_API_URL", "aima-api:8080")
    monkeypatch.setenv("AIMA_OPERATOR_TOKEN", "t")
    with pytest.raises(kopf.PermanentError, match="AIMA_OPERATOR_API_URL"):
        await main.startup(settings=kopf.OperatorSettings(), memo=kopf.Memo())


async def test_the_registered_functions_pass_kopf_kwargs_on(gateway: Gateway, client: JobClient) -> None:
    memo = kopf.Memo(client=client)
    raw = analysis_job(caseId=gateway.case_id, media={"ids": gateway.media_ids})
    patch = kopf.Patch()
    await main.submit(body=kopf.Body(raw), patch=patch, memo=memo, logger=LOG, spec=raw["spec"])
    job_id = patch["status"]["jobId"]
    raw["status"] = dict(patch["status"])
    gateway.move(job_id, JobPhase.ESTIMATING, JobPhase.RUNNING)
    polled = kopf.Patch()
    await main.poll(body=kopf.Body(raw), patch=polled, memo=memo, logger=LOG)
    assert polled["status"]["phase"] == "Running"
    await main.cancel(body=kopf.Body(raw), memo=memo, logger=LOG)
    assert gateway.job(job_id).phase is JobPhase.CANCELLED
