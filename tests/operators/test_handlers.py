"""The handlers driven with AnalysisJob bodies: the status patches and conditions they write, the
gateway calls they make (through `JobClient`) and the Kopf errors they raise. Every patched body is
checked against the CRD's schema (`applied`), as the API server would check it.

TODO real API: the gateway here is `tests.operators.gateway.FakeGateway` (an httpx MockTransport)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf
import pytest

from operators.analysisjob import handlers
from operators.analysisjob.client import GatewayError, JobClient
from tests.operators.gateway import FakeGateway
from tests.operators.support import CASE_ID, MEDIA_IDS, NAMESPACE, analysis_job, applied, condition


def clock(minute: int) -> handlers.Clock:
    return lambda: datetime(2026, 3, 1, 10, minute, tzinfo=UTC)


async def submitted(client: JobClient, **spec: Any) -> dict[str, Any]:
    """A resource whose create handler ran and whose status patch was applied."""
    body = analysis_job(**spec)
    patch = kopf.Patch()
    await handlers.create(body, patch, client, now=clock(0))
    return applied(body, patch)


async def polled(
    body: dict[str, Any], client: JobClient, minute: int = 1
) -> tuple[dict[str, Any], kopf.Patch]:
    patch = kopf.Patch()
    await handlers.poll(body, patch, client, now=clock(minute))
    return applied(body, patch), patch


# --- create ---------------------------------------------------------------------------------------


async def test_create_submits_the_job_and_patches_its_status(gateway: FakeGateway, client: JobClient) -> None:
    body = analysis_job(
        steps=["probe", "transcribe", "fuse"],
        priority="high",
        context="people near the warehouse",
        language="de",
        approval={"required": True, "approved": False},
        holdUntil="2026-03-01T22:00:00Z",
        media={"ids": MEDIA_IDS, "sources": ["s3://evidence/cam-03.mp4"]},
    )
    patch = kopf.Patch()
    await handlers.create(body, patch, client, now=clock(0))

    assert gateway.requests == [
        {
            "media_ids": MEDIA_IDS,
            "sources": ["s3://evidence/cam-03.mp4"],
            "steps": ["probe", "transcribe", "fuse"],
            "priority": "high",
            "context": "people near the warehouse",
            "language": "de",
            "require_approval": True,
            "approved": False,
            "hold_until": "2026-03-01T22:00:00Z",
            "reference": f"{NAMESPACE}/harbour-fire/5d3b0a8e-1c2f-4e6a-9b7d-0f1e2d3c4b5a",
        }
    ]
    assert set(patch) == {"status"}  # nothing but the status subresource
    after = applied(body, patch)
    status = after["status"]
    assert status["jobId"] == "job-1"
    assert status["phase"] == "Queued"
    assert status["progress"] == 0.0
    assert status["progressText"] == "0%"
    assert status["files"] == 3
    assert status["observedGeneration"] == 1
    assert status["estimate"] == {
        "modelSeconds": 340.0,
        "wallSeconds": 95.0,
        "cost": 12.4,
        "currency": "EUR",
        "gpuProfile": "l4",
        "costText": "12.40 EUR",
    }
    assert status["submitted"]["caseId"] == CASE_ID
    assert status["submitted"]["priority"] == "high"
    assert condition(after, "Submitted") == {
        "type": "Submitted",
        "status": "True",
        "reason": "Created",
        "message": f"job job-1 in case {CASE_ID}",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-03-01T10:00:00Z",
    }
    assert condition(after, "Ready")["status"] == "False"
    assert condition(after, "Succeeded")["status"] == "Unknown"
    assert condition(after, "Failed")["status"] == "False"


async def test_a_retried_create_never_submits_twice(gateway: FakeGateway, client: JobClient) -> None:
    body = analysis_job()
    first, second = kopf.Patch(), kopf.Patch()
    await handlers.create(body, first, client, now=clock(0))
    await handlers.create(body, second, client, now=clock(0))  # the first outcome was lost
    assert len(gateway.jobs) == 1
    assert [r["reference"] for r in gateway.requests] == [handlers.job_reference(body)] * 2
    assert condition(applied(body, second), "Submitted")["reason"] == "AlreadySubmitted"

    calls = len(gateway.calls)
    again = kopf.Patch()
    await handlers.create(applied(body, first), again, client)  # the status says it was submitted
    assert len(gateway.calls) == calls
    assert not again


async def test_an_approval_given_before_submission_goes_with_the_job(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client, approval={"required": True, "approved": True})
    assert gateway.requests[0]["approved"] is True
    assert condition(body, "Approved")["status"] == "True"


async def test_a_refused_submission_fails_permanently(gateway: FakeGateway, client: JobClient) -> None:
    body = analysis_job(caseId="no-such-case")
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError, match="404"):
        await handlers.create(body, patch, client, now=clock(0))
    after = applied(body, patch)
    assert after["status"]["phase"] == "Failed"
    assert "jobId" not in after["status"]
    submitted_condition = condition(after, "Submitted")
    assert (submitted_condition["status"], submitted_condition["reason"]) == ("False", "NotFound")
    assert "no case no-such-case" in submitted_condition["message"]
    assert condition(after, "Failed")["status"] == "True"
    assert not handlers.polling(after["status"])


async def test_an_unavailable_gateway_is_retried_after_its_retry_after(
    gateway: FakeGateway, client: JobClient
) -> None:
    gateway.fail_next("POST", "/jobs", 503, "database down", **{"Retry-After": "7"})
    body = analysis_job()
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
    assert len(gateway.jobs) == 1


# --- poll -----------------------------------------------------------------------------------------


async def test_poll_mirrors_progress_and_counts_and_patches_nothing_when_unchanged(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client)
    gateway.set(
        "job-1",
        phase="Running",
        progress=0.4237,
        eta_s=120.4,
        counts={"probe": {"succeeded": 2}, "transcribe": {"running": 1, "pending": 1}},
        actual={"model_s": 12.0, "cost": 0.5, "currency": "EUR"},
    )
    body, patch = await polled(body, client)
    status = body["status"]
    assert patch["status"]["phase"] == "Running"
    assert (status["progress"], status["progressText"], status["etaSeconds"]) == (0.4237, "42%", 120)
    assert status["steps"]["transcribe"] == {
        "pending": 1,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "not_run": 0,
        "cancelled": 0,
    }
    assert status["steps"]["probe"]["succeeded"] == 2
    assert status["actual"]["costText"] == "0.50 EUR"
    assert condition(body, "Ready")["reason"] == "Running"
    assert "submitted" in status  # the poll leaves the change handlers' fields alone

    unchanged, patch = await polled(body, client, minute=2)
    assert not patch
    assert unchanged == body

    gateway.set("job-1", progress=0.5, eta_s=90.0)
    body, patch = await polled(body, client, minute=3)
    assert patch["status"] == {"progress": 0.5, "progressText": "50%", "etaSeconds": 90}


async def test_poll_ends_with_the_final_phase_and_stops(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client)
    gateway.set("job-1", phase="Running", progress=0.9, eta_s=10.0)
    body, _ = await polled(body, client)
    running_since = condition(body, "Ready")["lastTransitionTime"]
    gateway.set(
        "job-1",
        phase="Succeeded",
        progress=1.0,
        eta_s=None,
        report={"report_id": "rep-7", "version": 2},
        finished_at="2026-03-01T10:30:00Z",
    )
    body, patch = await polled(body, client, minute=30)
    status = body["status"]
    assert patch["status"]["etaSeconds"] is None  # removed by the merge patch
    assert "etaSeconds" not in status
    assert (status["phase"], status["progressText"]) == ("Succeeded", "100%")
    assert status["report"] == {"reportId": "rep-7", "version": 2}
    ready = condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert "report rep-7 version 2" in ready["message"]
    assert ready["lastTransitionTime"] == "2026-03-01T10:30:00Z" != running_since
    assert condition(body, "Succeeded")["status"] == "True"
    assert condition(body, "Submitted")["lastTransitionTime"] == "2026-03-01T10:00:00Z"

    assert not handlers.polling(status)
    calls = len(gateway.calls)
    _, patch = await polled(body, client, minute=31)
    assert not patch
    assert len(gateway.calls) == calls  # a final job is not asked again


async def test_a_failed_job_says_why(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client)
    gateway.set("job-1", phase="Failed", reason="probe: no readable stream in cam-03.mp4")
    body, _ = await polled(body, client)
    failed = condition(body, "Failed")
    assert (failed["status"], failed["message"]) == ("True", "probe: no readable stream in cam-03.mp4")
    assert (condition(body, "Succeeded")["status"], condition(body, "Ready")["status"]) == ("False", "False")


async def test_a_partial_success_is_ready_with_a_note(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client)
    gateway.set(
        "job-1", phase="PartiallySucceeded", progress=1.0, report={"report_id": "rep-8", "version": 1}
    )
    body, _ = await polled(body, client)
    ready = condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "PartiallySucceeded")
    assert "some files or steps failed" in ready["message"]


async def test_a_job_gone_from_the_gateway_fails_the_resource(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client)
    del gateway.jobs["job-1"]
    body, _ = await polled(body, client)
    assert body["status"]["phase"] == "Failed"
    assert condition(body, "Failed")["reason"] == "JobNotFound"
    assert not handlers.polling(body["status"])


# --- approval -------------------------------------------------------------------------------------


async def test_awaiting_approval_shows_the_cost_and_waits(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client, approval={"required": True, "approved": False})
    gateway.set("job-1", phase="AwaitingApproval")
    body, _ = await polled(body, client)
    awaiting = condition(body, "AwaitingApproval")
    assert awaiting["status"] == "True"
    assert "12.40 EUR" in awaiting["message"]
    assert "aima.io/approved=true" in awaiting["message"]
    assert not any(path.endswith("/approve") for _, path in gateway.calls)


async def test_approval_by_annotation_is_sent_once(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client, approval={"required": True, "approved": False})
    gateway.set("job-1", phase="AwaitingApproval")
    body, _ = await polled(body, client)
    body["metadata"]["annotations"] = {"aima.io/approved": "true"}

    patch = kopf.Patch()
    await handlers.approve(body, patch, client, now=clock(5))
    body = applied(body, patch)
    approved = condition(body, "Approved")
    assert (approved["status"], approved["message"]) == (
        "True",
        "approved by svc-operator at 2026-03-01T10:05:00Z",
    )
    assert condition(body, "AwaitingApproval")["status"] == "False"
    assert body["status"]["phase"] == "Running"

    again = kopf.Patch()
    await handlers.approve(body, again, client, now=clock(6))  # e.g. a re-annotation
    await polled(body, client, minute=7)
    assert not again
    assert [path for _, path in gateway.calls if path.endswith("/approve")] == [
        f"/api/v1/cases/{CASE_ID}/jobs/job-1/approve"
    ]


async def test_approval_by_spec_is_sent_by_the_poll_once_the_job_awaits_it(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client, approval={"required": True, "approved": False})
    body["spec"]["approval"]["approved"] = True
    patch = kopf.Patch()
    await handlers.approve(body, patch, client)  # still estimating: nothing to approve yet
    assert not patch
    gateway.set("job-1", phase="AwaitingApproval")
    body, _ = await polled(body, client)
    assert condition(body, "Approved")["status"] == "True"
    assert body["status"]["phase"] == "Running"
    assert sum(path.endswith("/approve") for _, path in gateway.calls) == 1


async def test_an_approval_the_job_no_longer_needs_is_no_error(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client, annotations={"aima.io/approved": "true"})
    gateway.set("job-1", phase="AwaitingApproval")
    gateway.fail_next("POST", "/approve", 409, "the job is Cancelled")
    body, _ = await polled(body, client)
    assert body["status"]["phase"] == "AwaitingApproval"  # as the gateway answered afterwards


async def test_no_approval_no_annotation_of_another_value(client: JobClient) -> None:
    body = analysis_job(annotations={"aima.io/approved": "yes please"})
    assert not handlers.approval_granted(body)
    assert handlers.approval_granted(analysis_job(annotations={"aima.io/approved": "True"}))
    assert handlers.approval_granted(analysis_job(approval={"approved": True}))


# --- update ---------------------------------------------------------------------------------------


async def test_a_changed_immutable_field_is_refused_and_the_job_goes_on(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client, steps=["probe", "transcribe"])
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

    gateway.set("job-1", phase="Running", progress=0.3)
    body, _ = await polled(body, client, minute=4)  # still the submitted case's job
    assert body["status"]["progressText"] == "30%"

    body["spec"]["caseId"], body["spec"]["steps"] = CASE_ID, ["probe", "transcribe"]
    body["metadata"]["generation"] = 3
    patch = kopf.Patch()
    await handlers.update(body, patch, now=clock(5))
    body = applied(body, patch)
    restored = condition(body, "ImmutableFieldChanged")
    assert (restored["status"], restored["reason"]) == ("False", "AsSubmitted")
    assert len(gateway.requests) == 1


async def test_the_poll_keeps_the_refusal_a_concurrent_patch_lost(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client)
    body["spec"]["media"] = {"ids": ["another-file"]}  # no update handler ran, or its patch was overwritten
    body, _ = await polled(body, client)
    assert condition(body, "ImmutableFieldChanged")["message"].startswith("media cannot change")
    assert len(gateway.requests) == 1


async def test_a_removed_optional_immutable_field_is_a_change(client: JobClient) -> None:
    body = await submitted(client, language="de", context="harbour")
    del body["spec"]["language"]
    patch = kopf.Patch()
    await handlers.update(body, patch)
    assert condition(applied(body, patch), "ImmutableFieldChanged")["message"].startswith("language cannot")


async def test_a_changed_priority_is_not_applied_and_says_so(client: JobClient) -> None:
    body = await submitted(client)
    body["spec"]["priority"] = "urgent"
    patch = kopf.Patch()
    await handlers.update(body, patch)
    body = applied(body, patch)
    note = condition(body, "ChangeNotApplied")
    assert (note["status"], note["reason"]) == ("True", "SubmissionOnly")
    assert "priority" in note["message"]
    assert all(c["type"] != "ImmutableFieldChanged" for c in body["status"]["conditions"])


async def test_an_update_that_changes_nothing_relevant_patches_nothing(client: JobClient) -> None:
    body = await submitted(client)
    body["metadata"]["annotations"] = {"note": "seen"}
    patch = kopf.Patch()
    await handlers.update(body, patch)
    assert not patch


# --- delete ---------------------------------------------------------------------------------------


async def test_delete_with_keep_cancels_a_running_job_and_keeps_its_results(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client)
    gateway.set("job-1", phase="Running")
    body, _ = await polled(body, client)
    await handlers.delete(body, client)
    assert gateway.calls[-1] == ("POST", f"/api/v1/cases/{CASE_ID}/jobs/job-1/cancel")
    assert gateway.deleted == []
    assert gateway.jobs["job-1"]["phase"] == "Cancelled"


async def test_delete_with_keep_leaves_a_final_job_alone(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client)
    gateway.set("job-1", phase="Succeeded", progress=1.0)
    body, _ = await polled(body, client)
    calls = len(gateway.calls)
    await handlers.delete(body, client)
    assert len(gateway.calls) == calls


async def test_delete_with_delete_removes_the_results(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client, deletePolicy="Delete")
    gateway.set("job-1", phase="Succeeded", progress=1.0)
    body, _ = await polled(body, client)
    await handlers.delete(body, client)
    assert gateway.deleted == [("job-1", "delete")]
    assert gateway.calls[-1][0] == "DELETE"


async def test_delete_of_a_job_that_ended_or_went_meanwhile_is_no_error(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = await submitted(client)
    gateway.fail_next("POST", "/cancel", 409, "the job is Succeeded")
    await handlers.delete(body, client)
    gateway.fail_next("POST", "/cancel", 404, "no job")
    await handlers.delete(body, client)
    await handlers.delete(analysis_job(), client)  # never submitted: nothing to do


async def test_delete_finds_a_job_whose_submission_answer_was_lost(
    gateway: FakeGateway, client: JobClient
) -> None:
    body = analysis_job()
    await handlers.create(body, kopf.Patch(), client)  # the job exists, the status patch was lost
    await handlers.delete(body, client)
    assert gateway.calls[-1] == ("POST", f"/api/v1/cases/{CASE_ID}/jobs/job-1/cancel")
    assert gateway.jobs["job-1"]["phase"] == "Cancelled"


async def test_delete_retries_while_the_gateway_is_down(gateway: FakeGateway, client: JobClient) -> None:
    body = await submitted(client, deletePolicy="Delete")
    gateway.fail_next("DELETE", "/job-1", 502, "bad gateway")
    with pytest.raises(kopf.TemporaryError):
        await handlers.delete(body, client)


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
    [
        (401, kopf.PermanentError),
        (403, kopf.PermanentError),
        (500, kopf.TemporaryError),
        (429, kopf.TemporaryError),
    ],
)
async def test_the_poll_raises_what_the_gateway_answers(
    gateway: FakeGateway, client: JobClient, status: int, error: type[Exception]
) -> None:
    body = await submitted(client)
    gateway.fail_next("GET", "/job-1", status, "no")
    patch = kopf.Patch()
    with pytest.raises(error):
        await handlers.poll(body, patch, client)
    assert not patch


async def test_an_unreachable_gateway_is_temporary(client: JobClient) -> None:
    import httpx

    from operators.analysisjob.client import BearerToken

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = JobClient("http://aima-api:8080", BearerToken("t"), transport=httpx.MockTransport(refuse))
    try:
        with pytest.raises(kopf.TemporaryError, match="unreachable"):
            await handlers.create(analysis_job(), kopf.Patch(), down)
    finally:
        await down.aclose()
