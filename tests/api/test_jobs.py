"""The job routes on the real gateway: submitting (and a reference submitted again), what is refused,
listing and showing, estimates, cancel, resume and approve with their conflicts, deleting, who may do
what, the audit records, the announcements in the outbox, the view's progress and time left from the
step ledger, and the server-sent events of a job followed until it ends (uvicorn on loopback: the
stream is read as it is written). No scheduler runs here: a submitted job stays queued, and the tests
move jobs with the kernel's repository."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from aima.access.scope import Scope
from aima.domain import Job, JobPhase, Priority, Step, StepState
from aima.job_view import compute, estimate_error, eta
from aima.storage.job_steps import JobSteps, StepRun
from aima.storage.jobs import JobOptions, JobRepository
from aima.storage.schema import outbox
from events.catalogue import JobCreated
from functions.api.problems import PROBLEM_JSON
from functions.api.routes import jobs as job_routes
from tests.api.conftest import World, seed_job, unique_png
from tests.api.report_seed import store_report
from tests.support import add_media, last_seq, records_since, serve


def jobs_path(world: World, case_id: str | None = None) -> str:
    return f"/api/v1/cases/{case_id or world.case_id}/jobs"


def scope(world: World) -> Scope:
    return Scope.for_case(world.tenant, world.case_id, "test")


def repository(world: World) -> JobRepository:
    return JobRepository(world.services.stores.db)


def a_file(world: World, case_id: str | None = None) -> str:
    """A probed image of the case (the shared one by default), as ingest and probe register it."""
    case = case_id or world.case_id
    media_id, _ = add_media(
        world.services.stores.objects,  # type: ignore[arg-type]
        world.services.media,
        Scope.for_case(world.tenant, case, "test"),
        case,
        unique_png(),
        content_type="image/png",
        filename="still.png",
    )
    world.services.media.set_probed(
        Scope.for_case(world.tenant, case, "test"), media_id, kind="image", metadata={}
    )
    return media_id


async def submit(world: World, caller: str = "analyst", **body: Any) -> httpx.Response:
    return await world.client.post(jobs_path(world), headers=world.headers(caller), json=body)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    return body


def announced(world: World) -> list[dict[str, Any]]:
    """The data of every ``job.created`` in the outbox, in the order written."""
    with world.services.stores.db.engine.connect() as c:
        rows = c.execute(select(outbox.c.body).where(outbox.c.type == JobCreated.TYPE).order_by(outbox.c.seq))
        return [json.loads(row.body)["data"] for row in rows]


# --- submitting ---------------------------------------------------------------------------------


async def test_a_submitted_job_is_queued_announced_and_a_reference_answers_it_again(world: World) -> None:
    files = [a_file(world), a_file(world)]
    response = await submit(world, media_ids=files, priority="high", reference="ticket-17", language="de")
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["phase"] == "Queued"
    assert view["priority"] == "high"
    assert view["files"] == 2
    assert view["steps"] == [step.value for step in Step]  # the tenant's analysis.steps
    assert (view["progress"], view["eta_s"], view["counts"]) == (0.0, None, {})
    assert view["approval"] == {"required": False, "approved_by": None, "approved_at": None}
    assert (view["reference"], view["report"], view["estimate"], view["error"]) == (
        "ticket-17",
        None,
        None,
        None,
    )

    job = repository(world).get(scope(world), view["id"])
    assert job is not None
    assert (job.submitted_by, job.language) == (world.users["analyst"].id, "de")
    children = repository(world).children(scope(world), job.id)
    assert sorted(child.media_id or "" for child in children) == sorted(files)
    created = [data for data in announced(world) if job.id in (data["job_id"], data["parent_job_id"])]
    assert created[0]["job_id"] == job.id  # the parent first, then its files
    assert {data["media_id"] for data in created[1:]} == set(files)

    again = await submit(world, media_ids=[files[0]], reference="ticket-17")
    assert again.status_code == 200
    assert again.json()["id"] == job.id
    assert len(repository(world).parents(scope(world), world.case_id)) == 1

    elsewhere = world.new_case("Warehouse")
    taken = await world.client.post(
        jobs_path(world, elsewhere),
        headers=world.headers("owner"),
        json={"media_ids": [a_file(world, elsewhere)], "reference": "ticket-17"},
    )
    assert problem(taken, 409)["type"] == "urn:aima:problem:reference-taken"


async def test_chosen_steps_approval_and_hold_are_kept(world: World) -> None:
    response = await submit(
        world,
        media_ids=[a_file(world)],
        steps=["probe", "transcribe", "probe"],
        require_approval=True,
        approved=True,
        hold_until="2030-01-01T08:00:00+00:00",
        context="The caller says the fire started at nine.",
    )
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["steps"] == ["probe", "transcribe"]
    assert view["approval"]["required"] is True
    assert view["approval"]["approved_by"] == world.users["analyst"].id
    job = repository(world).get(scope(world), view["id"])
    assert job is not None
    assert job.hold_until == datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert job.context == "The caller says the fire started at nine."


async def test_what_cannot_be_submitted_is_refused(world: World) -> None:
    stored = a_file(world)
    other_case = world.new_case("Warehouse")
    foreign = a_file(world, other_case)
    unknown = await submit(world, media_ids=[stored, "no-such-file"])
    assert "no-such-file" in problem(unknown, 422)["detail"]
    another = await submit(world, media_ids=[foreign])
    assert foreign in problem(another, 422)["detail"]
    step = await submit(world, media_ids=[stored], steps=["probe", "levitate"])
    assert problem(step, 422)["errors"][0]["loc"][:2] == ["body", "steps"]
    priority = await submit(world, media_ids=[stored], priority="asap")
    assert problem(priority, 422)["errors"][0]["loc"] == ["body", "priority"]
    sources = await submit(world, sources=["s3://bucket/clip.mp4"])
    assert problem(sources, 422)["detail"] == "importing from S3 URIs is not configured."
    nothing = await submit(world)
    problem(nothing, 422)
    too_many = await submit(world, media_ids=[stored] * 1001)
    problem(too_many, 422)
    extra = await submit(world, media_ids=[stored], colour="red")
    problem(extra, 422)
    assert repository(world).parents(scope(world), world.case_id) == []


# --- reading ------------------------------------------------------------------------------------


async def test_list_and_show_only_the_cases_parent_jobs(world: World) -> None:
    first = seed_job(world)
    second = seed_job(world, JobPhase.RUNNING)
    listed = await world.client.get(jobs_path(world), headers=world.headers("viewer"))
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [second.id, first.id]

    shown = await world.client.get(f"{jobs_path(world)}/{second.id}", headers=world.headers("guest_member"))
    assert (shown.status_code, shown.json()["phase"]) == (200, "Running")
    [child] = repository(world).children(scope(world), first.id)
    child_id = await world.client.get(f"{jobs_path(world)}/{child.id}", headers=world.headers("owner"))
    problem(child_id, 404)
    other_case = world.new_case("Warehouse")
    wrong_case = await world.client.get(
        f"{jobs_path(world, other_case)}/{first.id}", headers=world.headers("owner")
    )
    problem(wrong_case, 404)
    empty = await world.client.get(jobs_path(world, other_case), headers=world.headers("owner"))
    assert empty.json() == {"items": []}


async def test_the_view_follows_the_step_ledger_the_estimate_and_the_report(world: World) -> None:
    job = seed_job(world, JobPhase.RUNNING)
    [child] = repository(world).children(scope(world), job.id)
    steps = JobSteps(world.services.stores.db)
    steps.plan(scope(world), child, {"probe": 1.0, "faces": 10.0})
    steps.begin(scope(world), child, "probe", worker="test", lease_s=60)
    steps.finish(scope(world), child.id, "probe", StepState.SUCCEEDED)
    estimated = {
        "model_s": 6.0,
        "per_step": {"probe": {"units": 1, "model_s": 1.0}, "faces": {"units": 10, "model_s": 5.0}},
    }
    repository(world).set_fields(scope(world), job.id, estimate=estimated)

    view = (await world.client.get(f"{jobs_path(world)}/{job.id}", headers=world.headers("viewer"))).json()
    assert view["progress"] == 0.5
    assert view["counts"] == {"faces": {"pending": 1}, "probe": {"succeeded": 1}}
    assert view["eta_s"] == 5.0  # faces has no measured rate yet: the estimate's 0.5 s per frame
    assert view["estimate"] == estimated

    steps.begin(scope(world), child, "faces", worker="test", lease_s=60)
    steps.finish(scope(world), child.id, "faces", StepState.FAILED, reason="no model")
    repository(world).set_fields(scope(world), job.id, actual={"model_s": 4.0})
    repository(world).move(scope(world), job.id, JobPhase.PARTIALLY_SUCCEEDED)
    report = store_report(world.services.stores.documents, world.tenant, world.case_id, job_id=job.id)
    store_report(world.services.stores.documents, world.tenant, world.case_id, job_id="another-job")
    view = (await world.client.get(f"{jobs_path(world)}/{job.id}", headers=world.headers("viewer"))).json()
    assert (view["phase"], view["progress"], view["eta_s"]) == ("PartiallySucceeded", 1.0, 0.0)
    assert view["error"] == 0.5
    assert view["report"] == {"report_id": report.report_id, "version": report.version}
    assert view["finished_at"] is not None


async def test_the_files_route_gives_each_files_step_states_with_their_reasons(world: World) -> None:
    job = seed_job(world, JobPhase.RUNNING)
    [child] = repository(world).children(scope(world), job.id)
    path = f"{jobs_path(world)}/{job.id}/files"
    before = (await world.client.get(path, headers=world.headers("viewer"))).json()
    assert (before["job_id"], before["phase"], before["steps"]) == (job.id, "Running", [])
    [file] = before["files"]
    assert (file["media_id"], file["child_job_id"], file["steps"]) == (world.probed, child.id, [])

    steps = JobSteps(world.services.stores.db)
    steps.plan(scope(world), child, {"faces": 10.0, "probe": 1.0, "cues": 1.0})
    steps.begin(scope(world), child, "probe", worker="test", lease_s=60)
    steps.finish(scope(world), child.id, "probe", StepState.SUCCEEDED)
    steps.begin(scope(world), child, "faces", worker="test", lease_s=60)
    running = (await world.client.get(path, headers=world.headers("guest_member"))).json()
    assert running["steps"] == ["probe", "faces", "cues"]  # pipeline order: cues is the phrases step
    [file] = running["files"]
    states = {entry["step"]: (entry["state"], entry["reason"]) for entry in file["steps"]}
    assert states == {"probe": ("succeeded", None), "faces": ("running", None), "cues": ("pending", None)}

    steps.finish(scope(world), child.id, "faces", StepState.FAILED, reason="no model")
    steps.record(scope(world), child, "cues", StepState.NOT_RUN, reason="no audio track")
    [file] = (await world.client.get(path, headers=world.headers("owner"))).json()["files"]
    ended = {entry["step"]: entry for entry in file["steps"]}
    assert (ended["faces"]["state"], ended["faces"]["reason"], ended["faces"]["attempts"]) == (
        "failed",
        "no model",
        1,
    )
    assert ended["faces"]["finished_at"] is not None
    assert (ended["cues"]["state"], ended["cues"]["reason"]) == ("not_run", "no audio track")

    for caller in ("nonmember", "guest_nonmember", "other_admin"):
        problem(await world.client.get(path, headers=world.headers(caller)), 404)
    child_path = f"{jobs_path(world)}/{child.id}/files"
    problem(await world.client.get(child_path, headers=world.headers("owner")), 404)


def run(step: str, state: StepState, units: float | None, seconds: float | None = None) -> StepRun:
    return StepRun("child", "parent", step, state, 1, None, None, None, seconds, units, None)


def test_the_time_left_prefers_this_jobs_measured_rates_over_the_estimate() -> None:
    runs = [
        run("transcribe", StepState.SUCCEEDED, 60.0, 30.0),  # 0.5 s per second of audio, measured
        run("transcribe", StepState.RUNNING, 100.0),
        run("ocr", StepState.PENDING, 4.0),
        run("vision", StepState.PENDING, 8.0),  # no rate at all: left out
    ]
    estimated = {
        "per_step": {"transcribe": {"units": 160, "model_s": 16.0}, "ocr": {"units": 4, "model_s": 2.0}}
    }
    assert eta(runs, estimated) == 50.0 + 2.0
    assert eta(runs[-1:], None) is None
    assert eta([run("probe", StepState.NOT_RUN, 1.0)], None) == 0.0
    assert estimate_error({"model_s": 12.0}, {"model_s": 10.0}) == 0.2
    assert estimate_error({"model_s": 12.0}, {"model_s": 0.0}) is None
    assert estimate_error(None, {"model_s": 1.0}) is None

    job = Job(tenant_id="t", case_id="c", phase=JobPhase.CANCELLED, priority=Priority.LOW, steps=[Step.OCR])
    view = compute(job, runs, files=1)
    assert (view.progress, view.eta_s) == (1.0, 0.0)  # final: done, whatever did not run
    assert view.counts["transcribe"] == {"succeeded": 1, "running": 1}


async def test_an_estimate_is_what_the_scheduler_would_compute(world: World) -> None:
    files = [a_file(world), a_file(world)]
    response = await world.client.post(
        f"{jobs_path(world)}/estimate", headers=world.headers("viewer"), json={"media_ids": files}
    )
    assert response.status_code == 200, response.text
    estimated = response.json()
    assert (estimated["gpu_profile"], estimated["files"], estimated["basis"]) == ("cpu", 2, "probed")
    assert {"probe", "faces", "fuse"} <= set(estimated["per_step"])
    assert "transcribe" not in estimated["per_step"]  # images have no sound

    chosen = await world.client.post(
        f"{jobs_path(world)}/estimate",
        headers=world.headers("analyst"),
        json={"media_ids": files[:1], "steps": ["probe"], "gpu_profile": "l4"},
    )
    assert (chosen.json()["gpu_profile"], set(chosen.json()["per_step"])) == ("l4", {"probe"})
    unknown = await world.client.post(
        f"{jobs_path(world)}/estimate",
        headers=world.headers("analyst"),
        json={"media_ids": files, "gpu_profile": "tpu"},
    )
    assert "tpu" in problem(unknown, 422)["detail"]
    missing = await world.client.post(
        f"{jobs_path(world)}/estimate", headers=world.headers("analyst"), json={"media_ids": ["gone"]}
    )
    assert "gone" in problem(missing, 422)["detail"]


# --- moving -------------------------------------------------------------------------------------


async def test_cancel_then_resume_and_the_conflicts_name_the_phase(world: World) -> None:
    job = seed_job(world, JobPhase.RUNNING)
    path = f"{jobs_path(world)}/{job.id}"
    cancelled = await world.client.post(f"{path}/cancel", headers=world.headers("analyst"))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["phase"] == "Cancelled"
    assert cancelled.json()["reason"] == f"cancelled by {world.users['analyst'].id}"
    again = await world.client.post(f"{path}/cancel", headers=world.headers("analyst"))
    body = problem(again, 409)
    assert body["type"] == "urn:aima:problem:invalid-transition"
    assert "Cancelled" in body["detail"]

    resumed = await world.client.post(f"{path}/resume", headers=world.headers("owner"))
    assert (resumed.status_code, resumed.json()["phase"]) == (200, "Queued")
    twice = await world.client.post(f"{path}/resume", headers=world.headers("owner"))
    assert "Queued" in problem(twice, 409)["detail"]


async def test_only_a_job_awaiting_approval_can_be_approved(world: World) -> None:
    queued = seed_job(world)
    refused = await world.client.post(
        f"{jobs_path(world)}/{queued.id}/approve", headers=world.headers("owner")
    )
    assert "Queued" in problem(refused, 409)["detail"]

    waiting = seed_job(world, JobPhase.AWAITING_APPROVAL, JobOptions(require_approval=True))
    approved = await world.client.post(
        f"{jobs_path(world)}/{waiting.id}/approve", headers=world.headers("owner")
    )
    assert approved.status_code == 200, approved.text
    view = approved.json()
    assert view["phase"] == "Queued"
    assert view["approval"]["required"] is True
    assert view["approval"]["approved_by"] == world.users["owner"].id
    assert view["approval"]["approved_at"] is not None


async def test_delete_cancels_and_keeps_the_results(world: World) -> None:
    job = seed_job(world, JobPhase.RUNNING)
    path = f"{jobs_path(world)}/{job.id}"
    deleted = await world.client.delete(path, headers=world.headers("analyst"))
    assert deleted.status_code == 204
    current = repository(world).get(scope(world), job.id)
    assert current is not None
    assert current.phase is JobPhase.CANCELLED
    assert (
        await world.client.delete(path, headers=world.headers("analyst"))
    ).status_code == 204  # ended: nothing to do
    results = await world.client.delete(path, headers=world.headers("owner"), params={"results": "delete"})
    assert problem(results, 422)["type"] == "urn:aima:problem:not-supported"
    bad = await world.client.delete(path, headers=world.headers("owner"), params={"results": "shred"})
    problem(bad, 422)


# --- who, and the trace they leave ---------------------------------------------------------------


async def test_viewers_read_but_do_not_run_and_non_members_see_nothing(world: World) -> None:
    job = seed_job(world)
    path = f"{jobs_path(world)}/{job.id}"
    for route in ("/cancel", "/resume", "/approve"):
        problem(await world.client.post(path + route, headers=world.headers("viewer")), 403)
    problem(await world.client.delete(path, headers=world.headers("guest_member")), 403)
    problem(await submit(world, "viewer", media_ids=[a_file(world)]), 403)
    current = repository(world).get(scope(world), job.id)
    assert current is not None
    assert current.phase is JobPhase.QUEUED
    for caller in ("nonmember", "guest_nonmember", "other_admin"):
        problem(await world.client.get(path, headers=world.headers(caller)), 404)
        problem(await world.client.post(path + "/cancel", headers=world.headers(caller)), 404)


async def test_every_call_leaves_one_audit_record(world: World) -> None:
    media_id = a_file(world)
    before = last_seq(world)
    created = await submit(world, media_ids=[media_id], reference="audited")
    job_id = created.json()["id"]
    await submit(world, media_ids=[media_id], reference="audited")
    await world.client.get(f"{jobs_path(world)}/{job_id}", headers=world.headers("viewer"))
    await world.client.post(f"{jobs_path(world)}/{job_id}/approve", headers=world.headers("owner"))
    await world.client.post(f"{jobs_path(world)}/{job_id}/cancel", headers=world.headers("viewer"))
    records = [
        (r["actor"], r["action"], r["outcome"], r["object"], r["detail"])
        for r in records_since(world, before)
    ]
    analyst, viewer, owner = (world.users[name].id for name in ("analyst", "viewer", "owner"))
    job_object = f"case/{world.case_id}/job/{job_id}"
    assert [r[:4] for r in records] == [
        (analyst, "analysis.run", "allowed", job_object),
        (analyst, "analysis.run", "allowed", job_object),
        (viewer, "case.read", "allowed", job_object),
        (owner, "analysis.run", "failed", None),
        (viewer, "analysis.run", "denied", None),
    ]
    assert records[0][4]["files"] == 1
    assert records[0][4]["reference"] == "audited"
    assert records[1][4]["existing"] is True
    assert records[3][4]["error"] == "invalid-transition"
    assert all(r["case_id"] == world.case_id for r in records_since(world, before))


# --- following ----------------------------------------------------------------------------------


@pytest.fixture
async def gateway(app: FastAPI, world: World) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each server-sent event, and ("comment", text) of each comment."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data += line.partition(":")[2].strip()
        elif line == "" and data:
            yield name, data
            name, data = "message", ""


async def test_the_event_stream_sends_each_change_and_ends_with_the_job(
    world: World, gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_routes, "HEARTBEAT_S", 0.6)
    job = seed_job(world)
    url = f"{gateway}{jobs_path(world)}/{job.id}/events"
    seen: list[tuple[str, dict[str, Any] | str]] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url, headers=world.headers("viewer")) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        async with asyncio.timeout(15):
            async for name, data in events(response):
                if name == "comment":
                    seen.append((name, data))
                    if data == "heartbeat" and len(seen) == 2:
                        await asyncio.to_thread(
                            repository(world).move, scope(world), job.id, JobPhase.ESTIMATING
                        )
                    continue
                view = json.loads(data)
                seen.append((name, view))
                if view["phase"] == "Estimating":
                    await asyncio.to_thread(repository(world).cancel, scope(world), job.id, by="test")
    phases = [item[1]["phase"] if isinstance(item[1], dict) else item[1] for item in seen]
    assert phases == ["Queued", "heartbeat", "Estimating", "Cancelled"]
    assert seen[-1][1]["progress"] == 1.0  # type: ignore[index]


async def test_the_stream_of_a_finished_job_is_its_view_and_missing_jobs_are_404(
    world: World, gateway: str
) -> None:
    job = seed_job(world, JobPhase.SUCCEEDED)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{gateway}{jobs_path(world)}/{job.id}/events", headers=world.headers("owner")
        )
        assert response.status_code == 200
        assert response.text.startswith("event: job\ndata: {")
        assert response.text.count("event: job") == 1
        missing = await client.get(
            f"{gateway}{jobs_path(world)}/nothing/events", headers=world.headers("owner")
        )
        problem(missing, 404)
        outsider = await client.get(
            f"{gateway}{jobs_path(world)}/{job.id}/events", headers=world.headers("nonmember")
        )
        problem(outsider, 404)
