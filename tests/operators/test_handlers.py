"""The handlers driven with AnalysisJob bodies against the real gateway: the status patches and
conditions they write, the calls they make and the Kopf errors they raise. Every patched body is
checked against the CRD's schema (`applied`), as the API server would check it. Jobs move as the
scheduler would move them (`Gateway.move`); `Gateway.fail_next` stands for an outage in front of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf
import pytest

from aima.access.scope import Scope
from aima.domain import JobPhase, StepState
from operators.analysisjob import handlers
from operators.analysisjob.client import BearerToken, GatewayError, JobClient
from tests.api.report_seed import store_report
from tests.operators.gateway import URL, Gateway
from tests.operators.support import NAMESPACE, analysis_job, applied, condition

Q, E, A, R = JobPhase.QUEUED, JobPhase.ESTIMATING, JobPhase.AWAITING_APPROVAL, JobPhase.RUNNING


def clock(minute: int) -> handlers.Clock:
    return lambda: datetime(2026, 3, 1, 10, minute, tzinfo=UTC)


def resource(gateway: Gateway, **spec: Any) -> dict[str, Any]:
    """An AnalysisJob of the gateway's case and files."""
    return analysis_job(**{"caseId": gateway.case_id, "media": {"ids": gateway.media_ids}, **spec})


async def submitted(gateway: Gateway, client: JobClient, **spec: Any) -> dict[str, Any]:
    """A resource whose create handler ran and whose status patch was applied."""
    body = resource(gateway, **spec)
    patch = kopf.Patch()
    await handlers.create(body, patch, client, now=clock(0))
    return applied(body, patch)


async def polled(
    body: dict[str, Any], client: JobClient, minute: int = 1
) -> tuple[dict[str, Any], kopf.Patch]:
    patch = kopf.Patch()
    await handlers.poll(body, patch, client, now=clock(minute))
    return applied(body, patch), patch


def job_id(body: dict[str, Any]) -> str:
    return str(body["status"]["jobId"])


def approvals(gateway: Gateway) -> int:
    return sum(path.endswith("/approve") for _, path in gateway.calls)


# --- create ---------------------------------------------------------------------------------------


async def test_create_submits_the_job_and_patches_its_status(gateway: Gateway, client: JobClient) -> None:
    body = resource(
        gateway,
        steps=["probe", "faces"],
        priority="high",
        context="people near the warehouse",
        language="de",
        approval={"required": True, "approved": False},
        holdUntil="2026-03-01T22:00:00Z",
    )
    patch = kopf.Patch()
    await handlers.create(body, patch, client, now=clock(0))

    assert gateway.submitted == [
        {
            "media_ids": gateway.media_ids,
            "sources": [],
            "steps": ["probe", "faces"],
            "priority": "high",
            "context": "people near the warehouse",
            "language": "de",
            "require_approval": True,
            "approved": False,
            "hold_until": "2026-03-01T22:00:00Z",
            "reference": f"{NAMESPACE}/harbour-fire/5d3b0a8e-1c2f-4e6a-9b7d-0f1e2d3c4b5a",
        }
    ]
    [job] = gateway.parents()
    assert (job.priority.value, job.language, job.require_approval) == ("high", "de", True)
    assert set(patch) == {"status"}  # nothing but the status subresource
    after = applied(body, patch)
    status = after["status"]
    assert status["jobId"] == job.id
    assert (status["phase"], status["progress"], status["progressText"], status["files"]) == (
        "Queued",
        0.0,
        "0%",
        2,
    )
    assert "estimate" not in status  # the scheduler has not estimated it yet
    assert status["observedGeneration"] == 1
    assert status["submitted"]["caseId"] == gateway.case_id
    assert status["submitted"]["priority"] == "high"
    assert condition(after, "Submitted") == {
        "type": "Submitted",
        "status": "True",
        "reason": "Created",
        "message": f"job {job.id} in case {gateway.case_id}",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-03-01T10:00:00Z",
    }
    assert condition(after, "Ready")["status"] == "False"
    assert condition(after, "Succeeded")["status"] == "Unknown"
    assert condition(after, "Failed")["status"] == "False"


async def test_a_retried_create_never_submits_twice(gateway: Gateway, client: JobClient) -> None:
    body = resource(gateway)
    first, second = kopf.Patch(), kopf.Patch()
    await handlers.create(body, first, client, now=clock(0))
    await handlers.create(body, second, client, now=clock(0))  # the first outcome was lost
    assert len(gateway.parents()) == 1
    assert [r["reference"] for r in gateway.submitted] == [handlers.job_reference(body)] * 2
    assert condition(applied(body, second), "Submitted")["reason"] == "AlreadySubmitted"

    calls = len(gateway.calls)
    again = kopf.Patch()
    await handlers.create(applied(body, first), again, client)  # the status says it was submitted
    assert len(gateway.calls) == calls
    assert not again


async def test_an_approval_given_before_submission_goes_with_the_job(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client, approval={"required": True, "approved": True})
    assert gateway.submitted[0]["approved"] is True
    assert gateway.job(job_id(body)).approved_by == gateway.operator_id
    assert condition(body, "Approved")["message"].startswith(f"approved by {gateway.operator_id} at ")


async def test_a_refused_submission_fails_permanently(gateway: Gateway, client: JobClient) -> None:
    body = resource(gateway, caseId="00000000-0000-4000-8000-000000000000")
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError, match="404"):
        await handlers.create(body, patch, client, now=clock(0))
    after = applied(body, patch)
    assert after["status"]["phase"] == "Failed"
    assert "jobId" not in after["status"]
    submitted_condition = condition(after, "Submitted")
    assert (submitted_condition["status"], submitted_condition["reason"]) == ("False", "NotFound")
    assert condition(after, "Failed")["status"] == "True"
    assert not handlers.polling(after["status"])


async def test_a_reference_another_cases_job_has_is_refused(gateway: Gateway, client: JobClient) -> None:
    """Possible only where the API server does not run the CRD's CEL rules: caseId changed before the
    create handler's first answer was recorded."""
    body = await submitted(gateway, client)
    tenant = Scope.for_tenant(gateway.tenant, "test")
    other = str(gateway.services.cases.create(tenant, "Warehouse", gateway.operator_id)["id"])
    body["spec"]["caseId"] = other
    del body["status"]
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError, match="409"):
        await handlers.create(body, patch, client, now=clock(1))
    assert condition(applied(body, patch), "Submitted")["reason"] == "ReferenceTaken"


async def test_s3_sources_are_refused_by_this_gateway(gateway: Gateway, client: JobClient) -> None:
    body = resource(gateway, media={"sources": ["s3://evidence/cam-03.mp4"]})
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError):
        await handlers.create(body, patch, client, now=clock(0))
    refused = condition(applied(body, patch), "Submitted")
    assert refused["reason"] == "UnprocessableEntity"
    assert "not configured" in refused["message"]


async def test_an_unavailable_gateway_is_retried_after_its_retry_after(
    gateway: Gateway, client: JobClient
) -> None:
    gateway.fail_next("POST", "/jobs", 503, **{"Retry-After": "7"})
    body = resource(gateway)
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as raised:
        await handlers.create(body, patch, client, now=clock(0))
    assert raised.value.delay == 7.0
    after = applied(body, patch)
    assert "phase" not in after["status"]
    assert condition(after, "Submitted")["reason"] == "GatewayUnavailable"

    retried = kopf.Patch()
    await handlers.create(after, retried, client, now=clock(1))
    assert condition(applied(after, retried), "Submitted")["status"] == "True"
    assert len(gateway.parents()) == 1


async def test_an_unreachable_gateway_is_temporary(gateway: Gateway, client: JobClient) -> None:
    gateway.fail_next("POST", "/jobs", None)
    with pytest.raises(kopf.TemporaryError, match="unreachable"):
        await handlers.create(resource(gateway), kopf.Patch(), client)


# --- poll -----------------------------------------------------------------------------------------


async def test_poll_mirrors_progress_counts_and_estimate_and_patches_nothing_when_unchanged(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client, steps=["probe", "faces"])
    job = job_id(body)
    gateway.move(job, E, R)
    gateway.estimate(job)
    gateway.plan(job, "probe", "faces")
    gateway.end(job, "probe", StepState.SUCCEEDED)
    body, patch = await polled(body, client)
    status = body["status"]
    assert patch["status"]["phase"] == "Running"
    assert (status["progress"], status["progressText"], status["etaSeconds"]) == (0.5, "50%", 10)
    assert status["steps"]["faces"] == {
        "pending": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "not_run": 0,
        "cancelled": 0,
    }
    assert status["steps"]["probe"]["succeeded"] == 2
    assert status["estimate"] == {
        "modelSeconds": 340.0,
        "wallSeconds": 95.0,
        "cost": 12.4,
        "currency": "EUR",
        "gpuProfile": "l4",
        "costText": "12.40 EUR",
    }
    assert condition(body, "Ready")["reason"] == "Running"
    assert "submitted" in status  # the poll leaves the change handlers' fields alone

    unchanged, patch = await polled(body, client, minute=2)
    assert not patch
    assert unchanged == body

    gateway.end(job, "faces", StepState.SUCCEEDED, files=1)
    body, patch = await polled(body, client, minute=3)
    assert patch["status"]["progressText"] == "75%"
    assert patch["status"]["steps"] == {"faces": {"pending": 1, "succeeded": 1}}
    assert body["status"]["etaSeconds"] == 0  # faces' measured rate (instant here) replaces the estimate's


async def test_poll_ends_with_the_final_phase_and_stops(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client)
    job = job_id(body)
    gateway.move(job, E, R)
    body, _ = await polled(body, client)
    running_since = condition(body, "Ready")["lastTransitionTime"]
    gateway.jobs.set_fields(gateway.scope, job, actual={"model_s": 300.0, "cost": 11.0, "currency": "EUR"})
    gateway.move(job, JobPhase.SUCCEEDED)
    report = store_report(gateway.services.stores.documents, gateway.tenant, gateway.case_id, job_id=job)
    body, patch = await polled(body, client, minute=30)
    status = body["status"]
    assert "etaSeconds" not in status
    assert (status["phase"], status["progressText"]) == ("Succeeded", "100%")
    assert status["report"] == {"reportId": report.report_id, "version": report.version}
    assert status["actual"]["costText"] == "11.00 EUR"
    ready = condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert f"report {report.report_id} version {report.version}" in ready["message"]
    assert ready["lastTransitionTime"] == "2026-03-01T10:30:00Z" != running_since
    assert condition(body, "Succeeded")["status"] == "True"
    assert condition(body, "Submitted")["lastTransitionTime"] == "2026-03-01T10:00:00Z"

    assert not handlers.polling(status)
    calls = len(gateway.calls)
    _, patch = await polled(body, client, minute=31)
    assert not patch
    assert len(gateway.calls) == calls  # a final job is not asked again


async def test_a_failed_job_says_why(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client)
    gateway.move(job_id(body), E, JobPhase.FAILED, reason="no GPU profile can run vision")
    body, _ = await polled(body, client)
    failed = condition(body, "Failed")
    assert (failed["status"], failed["message"]) == ("True", "no GPU profile can run vision")
    assert (condition(body, "Succeeded")["status"], condition(body, "Ready")["status"]) == ("False", "False")


async def test_a_partial_success_is_ready_with_a_note(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client)
    gateway.move(job_id(body), E, R, JobPhase.PARTIALLY_SUCCEEDED)
    body, _ = await polled(body, client)
    ready = condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "PartiallySucceeded")
    assert "some files or steps failed" in ready["message"]


async def test_a_job_gone_from_the_gateway_fails_the_resource(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client)
    gateway.jobs.delete(gateway.scope, job_id(body))
    body, _ = await polled(body, client)
    assert body["status"]["phase"] == "Failed"
    assert condition(body, "Failed")["reason"] == "JobNotFound"
    assert not handlers.polling(body["status"])


# --- approval -------------------------------------------------------------------------------------


async def awaiting(gateway: Gateway, client: JobClient, **spec: Any) -> dict[str, Any]:
    """A submitted job that awaits approval of its estimate, as the poll saw it."""
    body = await submitted(gateway, client, approval={"required": True, "approved": False}, **spec)
    gateway.move(job_id(body), E, A)
    gateway.estimate(job_id(body))
    return body


async def test_awaiting_approval_shows_the_cost_and_waits(gateway: Gateway, client: JobClient) -> None:
    body = await awaiting(gateway, client)
    body, _ = await polled(body, client)
    waiting = condition(body, "AwaitingApproval")
    assert waiting["status"] == "True"
    assert "12.40 EUR" in waiting["message"]
    assert "aima.io/approved=true" in waiting["message"]
    assert approvals(gateway) == 0


async def test_approval_by_annotation_is_sent_once(gateway: Gateway, client: JobClient) -> None:
    body = await awaiting(gateway, client)
    body, _ = await polled(body, client)
    body["metadata"]["annotations"] = {"aima.io/approved": "true"}

    patch = kopf.Patch()
    await handlers.approve(body, patch, client, now=clock(5))
    body = applied(body, patch)
    approved = condition(body, "Approved")
    assert approved["status"] == "True"
    assert approved["message"].startswith(f"approved by {gateway.operator_id} at ")
    assert condition(body, "AwaitingApproval")["status"] == "False"
    assert body["status"]["phase"] == "Queued"  # approved: back to the scheduler's queue

    again = kopf.Patch()
    await handlers.approve(body, again, client, now=clock(6))  # e.g. a re-annotation
    await polled(body, client, minute=7)
    assert not again
    assert approvals(gateway) == 1


async def test_approval_by_spec_is_sent_by_the_poll_once_the_job_awaits_it(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client, approval={"required": True, "approved": False})
    body["spec"]["approval"]["approved"] = True
    patch = kopf.Patch()
    await handlers.approve(body, patch, client)  # still queued: nothing to approve yet
    assert approvals(gateway) == 0
    gateway.move(job_id(body), E, A)
    body, _ = await polled(body, client)
    assert condition(body, "Approved")["status"] == "True"
    assert body["status"]["phase"] == "Queued"
    assert approvals(gateway) == 1


async def test_an_approval_the_job_no_longer_needs_is_no_error(gateway: Gateway, client: JobClient) -> None:
    body = await awaiting(gateway, client, annotations={"aima.io/approved": "true"})
    gateway.fail_next("POST", "/approve", 409)  # it moved on meanwhile
    body, _ = await polled(body, client)
    assert body["status"]["phase"] == "AwaitingApproval"  # as the gateway answered afterwards


def test_only_true_approves() -> None:
    assert not handlers.approval_granted(analysis_job(annotations={"aima.io/approved": "yes please"}))
    assert handlers.approval_granted(analysis_job(annotations={"aima.io/approved": "True"}))
    assert handlers.approval_granted(analysis_job(approval={"approved": True}))
    assert not handlers.approval_granted(analysis_job(approval={"required": True}))


# --- update ---------------------------------------------------------------------------------------


async def test_a_changed_immutable_field_is_refused_and_the_job_goes_on(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client, steps=["probe", "faces"])
    body["spec"]["caseId"] = "another-case"
    body["spec"]["steps"] = ["probe"]
    body["metadata"]["generation"] = 2
    calls = len(gateway.calls)

    patch = kopf.Patch()
    await handlers.update(body, patch, now=clock(3))
    body = applied(body, patch)
    assert len(gateway.calls) == calls  # nothing resubmitted, nothing cancelled
    refused = condition(body, "ImmutableFieldChanged")
    assert (refused["status"], refused["reason"], refused["observedGeneration"]) == ("True", "Refused", 2)
    assert refused["message"].startswith("caseId, steps cannot change")
    assert body["status"]["observedGeneration"] == 2

    gateway.move(job_id(body), E, R)
    body, _ = await polled(body, client, minute=4)  # still the submitted case's job
    assert body["status"]["phase"] == "Running"

    body["spec"]["caseId"], body["spec"]["steps"] = gateway.case_id, ["probe", "faces"]
    body["metadata"]["generation"] = 3
    patch = kopf.Patch()
    await handlers.update(body, patch, now=clock(5))
    body = applied(body, patch)
    restored = condition(body, "ImmutableFieldChanged")
    assert (restored["status"], restored["reason"]) == ("False", "AsSubmitted")
    assert len(gateway.submitted) == 1


async def test_the_poll_keeps_the_refusal_a_concurrent_patch_lost(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client)
    body["spec"]["media"] = {"ids": gateway.media_ids[:1]}  # no update handler ran, or its patch was lost
    body, _ = await polled(body, client)
    assert condition(body, "ImmutableFieldChanged")["message"].startswith("media cannot change")
    assert len(gateway.submitted) == 1


async def test_a_removed_optional_immutable_field_is_a_change(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client, language="de", context="harbour")
    del body["spec"]["language"]
    patch = kopf.Patch()
    await handlers.update(body, patch)
    assert condition(applied(body, patch), "ImmutableFieldChanged")["message"].startswith("language cannot")


async def test_a_changed_priority_is_not_applied_and_says_so(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client)
    body["spec"]["priority"] = "urgent"
    patch = kopf.Patch()
    await handlers.update(body, patch)
    body = applied(body, patch)
    note = condition(body, "ChangeNotApplied")
    assert (note["status"], note["reason"]) == ("True", "SubmissionOnly")
    assert "priority" in note["message"]
    assert all(c["type"] != "ImmutableFieldChanged" for c in body["status"]["conditions"])


async def test_an_update_that_changes_nothing_relevant_patches_nothing(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client)
    body["metadata"]["annotations"] = {"note": "seen"}
    patch = kopf.Patch()
    await handlers.update(body, patch)
    assert not patch


# --- delete ---------------------------------------------------------------------------------------


async def test_delete_with_keep_cancels_a_running_job_and_keeps_its_results(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client)
    gateway.move(job_id(body), E, R)
    body, _ = await polled(body, client)
    await handlers.delete(body, client)
    assert gateway.calls[-1] == ("POST", f"/api/v1/cases/{gateway.case_id}/jobs/{job_id(body)}/cancel")
    assert gateway.job(job_id(body)).phase is JobPhase.CANCELLED


async def test_delete_with_keep_leaves_a_final_job_alone(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client)
    gateway.move(job_id(body), E, R, JobPhase.SUCCEEDED)
    body, _ = await polled(body, client)
    calls = len(gateway.calls)
    await handlers.delete(body, client)
    assert len(gateway.calls) == calls


async def test_delete_with_delete_asks_for_the_results_to_go(gateway: Gateway, client: JobClient) -> None:
    """This gateway cannot delete a job's results yet (422): the job is cancelled all the same, the
    results stay, and the refusal is raised for Kopf to report."""
    body = await submitted(gateway, client, deletePolicy="Delete")
    gateway.move(job_id(body), E, R)
    body, _ = await polled(body, client)
    with pytest.raises(kopf.PermanentError, match="results are kept"):
        await handlers.delete(body, client)
    assert ("DELETE", f"/api/v1/cases/{gateway.case_id}/jobs/{job_id(body)}") in gateway.calls
    assert gateway.job(job_id(body)).phase is JobPhase.CANCELLED


async def test_delete_of_a_job_that_ended_or_went_meanwhile_is_no_error(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client)
    gateway.move(job_id(body), E, R)
    body, _ = await polled(body, client)
    gateway.move(job_id(body), JobPhase.SUCCEEDED)  # the status still says Running
    await handlers.delete(body, client)  # 409 on cancel
    gateway.jobs.delete(gateway.scope, job_id(body))
    await handlers.delete(body, client)  # 404
    await handlers.delete(resource(gateway, name="never-submitted"), client)


async def test_delete_finds_a_job_whose_submission_answer_was_lost(
    gateway: Gateway, client: JobClient
) -> None:
    body = resource(gateway)
    await handlers.create(body, kopf.Patch(), client)  # the job exists, the status patch was lost
    await handlers.delete(body, client)
    [job] = gateway.parents()
    assert job.phase is JobPhase.CANCELLED


async def test_delete_retries_while_the_gateway_is_down(gateway: Gateway, client: JobClient) -> None:
    body = await submitted(gateway, client)
    gateway.fail_next("POST", "/cancel", 502)
    with pytest.raises(kopf.TemporaryError):
        await handlers.delete(body, client)
    assert gateway.job(job_id(body)).phase is JobPhase.QUEUED


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
def test_a_refusal_is_a_permanent_error(status: int) -> None:
    error = handlers.kopf_error(GatewayError("refused", status=status))
    assert type(error) is kopf.PermanentError


@pytest.mark.parametrize(
    ("status", "retry_after", "delay"),
    [(409, None, 15.0), (429, 3.0, 3.0), (500, None, 15.0), (503, 30.0, 30.0), (None, None, 15.0)],
)
def test_what_may_pass_is_a_temporary_error(
    status: int | None, retry_after: float | None, delay: float
) -> None:
    error = handlers.kopf_error(GatewayError("failed", status=status, retry_after=retry_after))
    assert isinstance(error, kopf.TemporaryError)
    assert error.delay == delay


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, kopf.PermanentError), (500, kopf.TemporaryError), (429, kopf.TemporaryError)],
)
async def test_the_poll_raises_what_the_gateway_answers(
    gateway: Gateway, client: JobClient, status: int, error: type[Exception]
) -> None:
    body = await submitted(gateway, client)
    gateway.fail_next("GET", f"/jobs/{job_id(body)}", status)
    patch = kopf.Patch()
    with pytest.raises(error):
        await handlers.poll(body, patch, client)
    assert not patch


async def test_a_token_the_gateway_does_not_know_fails_permanently(
    gateway: Gateway, client: JobClient
) -> None:
    body = await submitted(gateway, client)
    stranger = JobClient(URL, BearerToken("not-a-token"), transport=gateway.transport())
    try:
        with pytest.raises(kopf.PermanentError, match="401"):
            await handlers.poll(body, kopf.Patch(), stranger)
    finally:
        await stranger.aclose()
