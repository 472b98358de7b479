"""A case's analysis jobs: submitted, listed, followed, cancelled, resumed, approved and estimated.

A job is one request to analyse files of a case (a parent job, one child job per file; the kernel's
`aima.storage.jobs.JobRepository`). The scheduler function admits it, estimates it, holds it for an
approval or starts it; the routes only create jobs and move them as a user asks. Every answer about a
job is an `aima.job_view.JobView`.

* ``POST /cases/{case_id}/jobs``: 201 with the new job. ``media_ids`` are stored files of the case (an
  unknown one, or one of another case, is a 422 naming it); ``steps`` default to the tenant's
  ``analysis.steps``; ``approved: true`` approves it as the submitter; a ``reference`` submitted
  before answers 200 with that job (409 if it belongs to another case). ``sources`` (``s3://`` URIs to
  import) are refused with 422: importing from S3 is not configured in this build;
* ``GET /cases/{case_id}/jobs``: the case's jobs, newest first (``{"items": [...]}``);
* ``GET .../jobs/{job_id}``: one job (404 for a child job's id or a job of another case);
* ``POST .../jobs/{job_id}/cancel|resume|approve``: the job after the move; 409 naming its phase when
  the phase does not allow it;
* ``DELETE .../jobs/{job_id}?results=keep``: 204; cancels the job unless it ended. ``results=delete``
  (also remove the job's files and their results) is a 422 for now: the kernel has no deletion of
  single files with everything derived from them (only of whole cases);
* ``POST .../jobs/estimate``: what a job on those files would cost (`aima.estimates.Estimate`), as the
  scheduler will estimate it;
* ``GET .../jobs/{job_id}/files``: each file of the job with the state of each of its steps, from the
  step ledger (``job_steps``): ``pending`` (planned, not started), ``running``, ``succeeded``,
  ``failed``, ``not_run`` or ``cancelled``, with the reason, attempts and times; a file whose steps
  are not planned yet (the job is queued or being estimated) has none;
* ``GET .../jobs/{job_id}/events``: ``text/event-stream``; an event ``job`` with the view at once and
  whenever it changes (the database is polled every `POLL_S`), a comment every `HEARTBEAT_S`, and the
  stream ends after the view of a finished job.

Reading (the list, a job, its files, its events, an estimate) needs ``case.read``: every member, viewers and
guests too, and the tenant's admins; non-members get 404. Submitting, cancelling, resuming, approving
and deleting run analysis: ``analysis.run`` (owners, analysts, admins; viewers and guests 403). Every
call writes one audit record with the route's action, its object ``case/<id>/job/<job>`` (or
``case/<id>/jobs``) and what was done; a submission's record commits with the announcements of its
jobs (the outbox).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.concurrency import run_in_threadpool

from aima.access.policy import Action
from aima.access.scope import Scope
from aima.domain import Job, JobPhase, Media, Priority, Step, StepState
from aima.estimates import Estimate, calibration, facts_of, function_steps
from aima.job_view import JobView, JobViews, UnknownProfile, job_estimate
from aima.storage.job_queue import JobQueue
from aima.storage.jobs import DuplicateReference, InvalidTransition, JobNotFound, JobOptions, job_created
from aima.storage.outbox import Outbox
from aima.storage.scoped import scoped_session
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import ID_PATTERN, NO_NUL, CaseId
from functions.api.security import Access, RouteTable, api_route, not_found

log = logging.getLogger(__name__)
router = RouteTable(tags=["jobs"])

JOBS = "/cases/{case_id}/jobs"
JOB = JOBS + "/{job_id}"
MAX_FILES = 1000
POLL_S = 0.5
"""How often the event stream reads the job again."""
HEARTBEAT_S = 15.0
"""How long the event stream stays silent at most (a comment keeps proxies from closing it)."""
EVENT_STREAM = "text/event-stream"
S3_NOT_CONFIGURED = "importing from S3 URIs is not configured"

JobId = Annotated[str, Path(pattern=ID_PATTERN, description="A job id (a parent job).")]
MediaId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
SourceUri = Annotated[str, StringConstraints(pattern=r"^s3://[^\x00]+$", max_length=2000)]
Results = Annotated[
    Literal["keep", "delete"],
    Query(description="`keep` the job's files and results, or `delete` them (not supported yet)."),
]


class JobSubmit(BaseModel):
    """A request to analyse files of the case; at least one of ``media_ids`` and ``sources``."""

    model_config = ConfigDict(extra="forbid")

    media_ids: list[MediaId] = Field(
        default_factory=list, max_length=MAX_FILES, description="stored files of this case"
    )
    sources: list[SourceUri] = Field(
        default_factory=list,
        max_length=MAX_FILES,
        description="s3:// URIs to import first (not configured in this build: 422)",
    )
    steps: list[Step] | None = Field(
        default=None, min_length=1, description="the steps to run (default: the tenant's analysis.steps)"
    )
    priority: Priority = Priority.NORMAL
    context: Annotated[str, StringConstraints(max_length=8000, pattern=NO_NUL)] | None = Field(
        default=None, description="the analyst's context for this job"
    )
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")] | None = Field(
        default=None, description="the language spoken in the files (default: detected)"
    )
    require_approval: bool | None = Field(
        default=None, description="hold the job for an approval before it runs (also above the cost limit)"
    )
    approved: bool = Field(default=False, description="approved by the submitter now")
    hold_until: AwareDatetime | None = Field(default=None, description="not before this time")
    reference: Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=NO_NUL)] | None = Field(
        default=None, description="the submitter's own id; submitting it again answers the job it named"
    )

    @model_validator(mode="after")
    def _something(self) -> JobSubmit:
        if not self.media_ids and not self.sources:
            raise ValueError("name at least one file: media_ids or sources")
        return self


class EstimateRequest(BaseModel):
    """Files of the case to estimate a job on, its steps and the GPU profile."""

    model_config = ConfigDict(extra="forbid")

    media_ids: list[MediaId] = Field(
        min_length=1, max_length=MAX_FILES, description="stored files of this case"
    )
    steps: list[Step] | None = Field(
        default=None, min_length=1, description="the steps to run (default: the tenant's analysis.steps)"
    )
    gpu_profile: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)] | None = (
        Field(
            default=None, description="a name in the gpu.profiles configuration (default: jobs.gpu_profile)"
        )
    )


class JobList(BaseModel):
    items: list[JobView] = Field(description="the case's jobs, newest first")


class FileStep(BaseModel):
    """One step of one file of a job, as the step ledger records it."""

    model_config = ConfigDict(extra="forbid")

    step: str = Field(description="the function's step name, as in the job view's counts (e.g. `cues`)")
    state: StepState
    reason: str | None = Field(description="why it failed or did not run")
    attempts: int = Field(ge=0)
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    seconds: float | None = Field(ge=0.0, description="how long it ran")


class JobFile(BaseModel):
    """A file of a job (its child job) and the state of each of its steps."""

    model_config = ConfigDict(extra="forbid")

    media_id: str
    filename: str | None
    child_job_id: str
    phase: JobPhase = Field(description="the child job's phase")
    steps: list[FileStep] = Field(description="in pipeline order; empty until the steps are planned")


class JobFiles(BaseModel):
    """The files of a job with their step states."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    phase: JobPhase
    steps: list[str] = Field(description="every step any file has in the ledger, in pipeline order")
    files: list[JobFile] = Field(description="in the order the job was submitted with")


def _views(access: Access) -> JobViews:
    stores = access.services.stores
    return JobViews(stores.db, stores.documents)


def _object(case_id: str, job_id: str) -> str:
    return f"case/{case_id}/job/{job_id}"


def _job(access: Access, views: JobViews, case_id: str, job_id: str) -> Job:
    """The case's parent job ``job_id``; 404 otherwise (a child job's id, another case's job)."""
    access.require_case()
    job = views.parent(access.scope, job_id, case_id)
    if job is None:
        raise not_found("job")
    return job


def _media(access: Access, case_id: str, media_ids: list[str]) -> list[Media]:
    """The case's stored files named (each once, in order); 422 naming the first that is none."""
    stored = {m.id: m for m in access.services.media.list(access.scope, case_id)}
    found = []
    for media_id in dict.fromkeys(media_ids):
        media = stored.get(media_id)
        if media is None:
            raise Problem(
                422, "unknown-media", "Unknown media", f"No stored file {media_id} in case {case_id}."
            )
        found.append(media)
    return found


def _refused(job: Job, verb: str) -> Problem:
    return Problem(409, "invalid-transition", "Not possible now", f"The job is {job.phase.value}; {verb}.")


# --- submitting ---------------------------------------------------------------------------------


@api_route(
    router,
    "POST",
    JOBS,
    action=Action.ANALYSIS_RUN,
    status_code=201,
    responses={
        200: {
            "description": "A job with this reference was submitted before; it is answered.",
            "model": JobView,
        },
        **problem_responses(409),
    },
)
def submit_job(case_id: CaseId, body: JobSubmit, access: Access, response: Response) -> JobView:
    """Analyse files of the case: a job for the request and one per file, queued for the scheduler."""
    access.require_case()
    if body.sources:
        raise Problem(422, "sources-not-configured", "Sources not configured", f"{S3_NOT_CONFIGURED}.")
    services = access.services
    views = _views(access)
    scope = access.scope
    if body.reference is not None:
        existing = _existing(access, views, case_id, body.reference, response)
        if existing is not None:
            return existing
    files = _media(access, case_id, body.media_ids)
    steps = body.steps or services.config.effective(access.subject.tenant_id).analysis.steps
    chosen = [step.value for step in dict.fromkeys(steps)]
    user_id = access.subject.user_id
    options = JobOptions(
        priority=body.priority,
        hold_until=body.hold_until,
        require_approval=bool(body.require_approval),
        approved_by=user_id if body.approved else None,
        context=body.context,
        language=body.language,
        reference=body.reference,
        submitted_by=user_id,
    )
    jobs = views.jobs
    try:
        parent = jobs.create_parent(scope, case_id, chosen, options, announce=False)
    except DuplicateReference:  # submitted at the same moment by another request
        assert body.reference is not None
        existing = _existing(access, views, case_id, body.reference, response)
        if existing is None:
            raise
        return existing
    try:
        events = [job_created(parent)]
        for media in files:
            child = jobs.create_child(scope, case_id, parent.id, media.id, chosen, announce=False)
            events.append(job_created(child))
        db = services.stores.db
        detail = {
            "files": len(files),
            "steps": chosen,
            "priority": parent.priority.value,
            "approved": body.approved,
            "reference": body.reference,
        }
        with scoped_session(db, scope) as session:
            Outbox(db).add(session, events)  # parent first, then its children: the scheduler starts them
            access.audit(session, object=_object(case_id, parent.id), detail=detail)
    except BaseException:
        jobs.delete(scope, parent.id)  # its children go with it; nothing was announced
        raise
    return views.view(scope, parent, files=len(files))


def _existing(
    access: Access, views: JobViews, case_id: str, reference: str, response: Response
) -> JobView | None:
    """The view of the tenant's job submitted with ``reference`` (answered 200, audited), None if
    there is none; 409 if it belongs to another case."""
    # the reference is unique in the tenant: look beyond the caller's cases, reveal only that it is taken
    job = views.jobs.by_reference(access.tenant_scope, reference)
    if job is None:
        return None
    if job.case_id != case_id:
        raise Problem(409, "reference-taken", "Reference taken", "Another case's job has this reference.")
    access.audit(object=_object(case_id, job.id), detail={"existing": True, "reference": reference})
    response.status_code = 200
    return views.view(access.scope, job)


# --- reading ------------------------------------------------------------------------------------


@api_route(router, "GET", JOBS, action=Action.CASE_READ)
def list_jobs(case_id: CaseId, access: Access) -> JobList:
    """The case's jobs (one per request), newest first, at most 100."""
    access.require_case()
    items = _views(access).parents(access.scope, case_id)
    access.audit(object=f"case/{case_id}/jobs", detail={"jobs": len(items)})
    return JobList(items=items)


@api_route(router, "GET", JOB, action=Action.CASE_READ)
def get_job(case_id: CaseId, job_id: JobId, access: Access) -> JobView:
    """One job of the case: its phase, progress, time left, step states, estimate and report."""
    views = _views(access)
    job = _job(access, views, case_id, job_id)
    view = views.view(access.scope, job)
    access.audit(object=_object(case_id, job_id), detail={"phase": view.phase.value})
    return view


@api_route(router, "GET", JOB + "/files", action=Action.CASE_READ)
def job_files(case_id: CaseId, job_id: JobId, access: Access) -> JobFiles:
    """Each file of the job with the state of each of its steps (pending, running, succeeded, failed,
    not_run, cancelled) and the reason, from the step ledger."""
    views = _views(access)
    job = _job(access, views, case_id, job_id)
    scope = access.scope
    runs: dict[str, list[FileStep]] = {}
    for run in views.steps.for_parent(scope, job.id):
        runs.setdefault(run.job_id, []).append(
            FileStep(
                step=run.step,
                state=run.state,
                reason=run.reason,
                attempts=run.attempts,
                started_at=run.started_at,
                finished_at=run.finished_at,
                seconds=run.seconds,
            )
        )
    names = {media.id: media.filename for media in access.services.media.list(scope, case_id)}
    files = []
    for child in views.jobs.children(scope, job.id):
        if child.media_id is None:
            continue
        steps = sorted(runs.get(child.id, []), key=lambda entry: _step_order(entry.step))
        files.append(
            JobFile(
                media_id=child.media_id,
                filename=names.get(child.media_id),
                child_job_id=child.id,
                phase=child.phase,
                steps=steps,
            )
        )
    named = sorted({entry.step for file in files for entry in file.steps}, key=_step_order)
    access.audit(object=_object(case_id, job_id), detail={"files": len(files)})
    return JobFiles(job_id=job.id, phase=job.phase, steps=named, files=files)


_PIPELINE = function_steps(member.value for member in Step)
"""The steps in pipeline order under the functions' names, which the ledger records (`cues`)."""


def _step_order(step: str) -> tuple[int, str]:
    """Pipeline order (`aima.domain.Step`), names it does not know after it."""
    return (_PIPELINE.index(step) if step in _PIPELINE else len(_PIPELINE)), step


@api_route(router, "POST", JOBS + "/estimate", action=Action.CASE_READ)
def estimate_job(case_id: CaseId, body: EstimateRequest, access: Access) -> Estimate:
    """What a job on these files would cost: model time per step, GPU-seconds, wall time and price under
    the GPU profile, as the scheduler estimates it (from the probe's durations, else from sizes)."""
    access.require_case()
    files = _media(access, case_id, body.media_ids)
    services = access.services
    config = services.config.effective(access.subject.tenant_id)
    queue = JobQueue(services.stores.db)
    try:
        estimated = job_estimate(
            config,
            [facts_of(media) for media in files],
            body.steps,
            body.gpu_profile,
            calibration=lambda name: calibration(queue.finished_pairs(name)),
        )
    except UnknownProfile as exc:
        raise Problem(422, "unknown-gpu-profile", "Unknown GPU profile", f"{exc}.") from None
    detail = {"files": len(files), "gpu_profile": estimated.gpu_profile, "cost": estimated.cost}
    access.audit(object=f"case/{case_id}/jobs", detail=detail)
    return estimated


# --- moving -------------------------------------------------------------------------------------

_CONFLICT = problem_responses(409)


@api_route(router, "POST", JOB + "/cancel", action=Action.ANALYSIS_RUN, responses=_CONFLICT)
def cancel_job(case_id: CaseId, job_id: JobId, access: Access) -> JobView:
    """Stop the job: it is scheduled no more, its steps not ended are cancelled, what finished is kept."""
    views = _views(access)
    job = _job(access, views, case_id, job_id)
    try:
        moved = views.jobs.cancel(access.scope, job.id, by=access.subject.user_id)
    except InvalidTransition:
        raise _refused(_current(access, views, job), "a finished job cannot be cancelled") from None
    access.audit(
        object=_object(case_id, job_id), detail={"phase": moved.phase.value, "from": job.phase.value}
    )
    return views.view(access.scope, moved)


@api_route(router, "POST", JOB + "/resume", action=Action.ANALYSIS_RUN, responses=_CONFLICT)
def resume_job(case_id: CaseId, job_id: JobId, access: Access) -> JobView:
    """Queue a cancelled or failed job again (only its steps that did not end well run), or pick up a
    running one whose worker died."""
    views = _views(access)
    job = _job(access, views, case_id, job_id)
    try:
        moved = views.jobs.resume(access.scope, job.id)
    except InvalidTransition:
        verb = "only a cancelled, failed or running job can be resumed"
        raise _refused(_current(access, views, job), verb) from None
    except JobNotFound:
        raise not_found("job") from None
    access.audit(
        object=_object(case_id, job_id), detail={"phase": moved.phase.value, "from": job.phase.value}
    )
    return views.view(access.scope, moved)


@api_route(router, "POST", JOB + "/approve", action=Action.ANALYSIS_RUN, responses=_CONFLICT)
def approve_job(case_id: CaseId, job_id: JobId, access: Access) -> JobView:
    """Approve a job that awaits approval: it goes back to the queue, approved by the caller."""
    views = _views(access)
    job = _job(access, views, case_id, job_id)
    try:
        moved = views.jobs.approve(access.scope, job.id, by=access.subject.user_id)
    except InvalidTransition:
        verb = "only a job awaiting approval can be approved"
        raise _refused(_current(access, views, job), verb) from None
    access.audit(object=_object(case_id, job_id), detail={"phase": moved.phase.value, "approved": True})
    return views.view(access.scope, moved)


@api_route(
    router,
    "DELETE",
    JOB,
    action=Action.ANALYSIS_RUN,
    status_code=204,
    response_class=Response,
    responses={204: {"description": "The job is cancelled (or had ended); its files and results stay."}},
)
def delete_job(case_id: CaseId, job_id: JobId, access: Access, results: Results = "keep") -> Response:
    """Cancel the job unless it ended. ``results=delete`` (remove its files and their results too) is not
    supported yet (422)."""
    views = _views(access)
    job = _job(access, views, case_id, job_id)
    if results == "delete":
        raise Problem(
            422,
            "not-supported",
            "Not supported yet",
            "Deleting a job's files and results is not supported yet; "
            "delete with results=keep, or delete the case.",
        )
    phase = job.phase
    if not phase.final:
        try:
            phase = views.jobs.cancel(access.scope, job.id, by=access.subject.user_id).phase
        except InvalidTransition:  # it ended meanwhile
            phase = _current(access, views, job).phase
    access.audit(object=_object(case_id, job_id), detail={"phase": phase.value, "results": results})
    return Response(status_code=204)


def _current(access: Access, views: JobViews, job: Job) -> Job:
    """The job as it is now (after a refused move); as it was if it is gone."""
    return views.parent(access.scope, job.id) or job


# --- following ----------------------------------------------------------------------------------


@api_route(
    router,
    "GET",
    JOB + "/events",
    action=Action.CASE_READ,
    response_class=StreamingResponse,
    responses={
        200: {
            "description": (
                "Server-sent events: `job` with the JobView JSON at once and whenever it changes, a "
                "comment as heartbeat, the end after the view of a finished job."
            ),
            "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
        }
    },
)
async def job_events(case_id: CaseId, job_id: JobId, access: Access) -> StreamingResponse:
    """Follow the job: its view at once, again whenever it changes, until it has ended."""
    views = _views(access)
    job = await run_in_threadpool(_job, access, views, case_id, job_id)
    files = await run_in_threadpool(views.files, access.scope, job)
    await run_in_threadpool(
        lambda: access.audit(object=_object(case_id, job_id), detail={"stream": "events"})
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(views, access, job, files), media_type=EVENT_STREAM, headers=headers)


async def _stream(views: JobViews, access: Access, job: Job, files: int) -> AsyncIterator[str]:
    scope, sent, quiet_since = access.scope, "", time.monotonic()
    while True:
        try:
            view = await run_in_threadpool(_poll, views, scope, job, files)
        except Exception:  # a store went away: end the stream, the client reconnects
            log.warning("job event stream ended: the job could not be read", exc_info=True)
            return
        if view is None:  # deleted with its case
            return
        text = view.model_dump_json()
        if text != sent:
            yield f"event: job\ndata: {text}\n\n"
            sent, quiet_since = text, time.monotonic()
        if view.phase.final:
            return
        await asyncio.sleep(POLL_S)
        if time.monotonic() - quiet_since >= HEARTBEAT_S:
            yield ": heartbeat\n\n"
            quiet_since = time.monotonic()


def _poll(views: JobViews, scope: Scope, job: Job, files: int) -> JobView | None:
    current = views.parent(scope, job.id)
    return None if current is None else views.view(scope, current, files=files)
