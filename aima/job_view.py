"""What a job looks like from outside: `JobView`, the one shape the API, its event stream and the CLI show.

A view is computed from the parent job's row, its step ledger (``job_steps``: one row per file and
step, planned when the scheduler starts the job) and, for a finished job, the newest report built
for it:

* ``progress``: ended steps ÷ planned steps over all files (0 before anything is planned); 1 once the
  job's phase is final;
* ``eta_s``: the model time of the steps not ended yet (pending or running), each at the seconds per
  unit this job measured for the same step (the mean over its succeeded files), else at the
  estimate's rate for that step (its model time ÷ its units); steps of neither kind are left out.
  Unknown (None) while nothing is planned or none of the remaining steps has a rate; 0 for a final
  job. It is the sum of the steps' times, not divided among files analysed in parallel, and it does
  not count down while a step runs: it changes when the ledger does, so a view changes only when
  the job does;
* ``counts``: step -> state -> files, under the functions' step names (``cues`` for the phrases step,
  ``fuse`` for the report), as the ledger records them;
* ``error``: |estimated - actual| ÷ actual model time, once the job has both.

`JobViews` loads views inside a `Scope`; `job_estimate` computes a request's estimate under the
tenant's configuration, exactly as the scheduler will when it admits the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from statistics import fmean
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aima.access.scope import Scope
from aima.config.schema import RuntimeConfig
from aima.domain import Job, JobPhase, Priority, Step
from aima.estimates import Estimate, MediaFacts, estimate
from aima.storage.documents import DocumentStore
from aima.storage.job_steps import JobSteps, StepRun, measured
from aima.storage.jobs import JobRepository
from aima.storage.relational import Database
from aima.storage.reports import REPORTS


class Approval(BaseModel):
    """Whether the job asked for an approval, and who gave it when."""

    model_config = ConfigDict(extra="forbid")

    required: bool = Field(description="the submitter asked for an approval before it runs")
    approved_by: str | None = None
    approved_at: datetime | None = None


class ReportRef(BaseModel):
    """The newest report version built for the job."""

    model_config = ConfigDict(extra="forbid")

    report_id: str
    version: int


class JobView(BaseModel):
    """A parent job as the API, its event stream and ``aima job`` show it (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    case_id: str
    phase: JobPhase
    priority: Priority
    steps: list[Step]
    progress: float = Field(ge=0.0, le=1.0, description="ended steps ÷ planned steps over all files")
    eta_s: float | None = Field(ge=0.0, description="model seconds the remaining steps need (None: unknown)")
    counts: dict[str, dict[str, int]] = Field(description="step -> state -> number of files")
    files: int = Field(ge=0)
    estimate: dict[str, Any] | None = Field(description="`aima.estimates.Estimate`, once estimated")
    actual: dict[str, Any] | None = Field(description="what the job used, in the estimate's shape")
    error: float | None = Field(ge=0.0, description="|estimated - actual| ÷ actual model time")
    approval: Approval
    report: ReportRef | None
    reason: str | None
    reference: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def compute(job: Job, runs: Sequence[StepRun], *, files: int, report: ReportRef | None = None) -> JobView:
    """The view of parent ``job`` from its step ledger ``runs`` (`JobSteps.for_parent`), its number of
    files and its report (see module docstring)."""
    final = job.phase.final
    ended = sum(1 for run in runs if run.state.ended)
    progress = 1.0 if final else (ended / len(runs) if runs else 0.0)
    counts: dict[str, dict[str, int]] = {}
    for run in runs:
        by_state = counts.setdefault(run.step, {})
        by_state[run.state.value] = by_state.get(run.state.value, 0) + 1
    return JobView(
        id=job.id,
        case_id=job.case_id,
        phase=job.phase,
        priority=job.priority,
        steps=list(job.steps),
        progress=round(progress, 4),
        eta_s=0.0 if final else eta(runs, job.estimate),
        counts=counts,
        files=files,
        estimate=job.estimate,
        actual=job.actual,
        error=estimate_error(job.estimate, job.actual),
        approval=Approval(
            required=job.require_approval, approved_by=job.approved_by, approved_at=job.approved_at
        ),
        report=report,
        reason=job.reason,
        reference=job.reference,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def eta(runs: Iterable[StepRun], estimated: Mapping[str, Any] | None) -> float | None:
    """Model seconds the steps not ended yet need (see module docstring); None when no rate is known."""
    runs = list(runs)
    if not runs:
        return None  # nothing planned yet
    remaining = [run for run in runs if not run.state.ended]
    if not remaining:
        return 0.0
    rates = {step: fmean(values) for step, values in measured(runs).items()}
    planned = _estimated_rates(estimated)
    total, known = 0.0, False
    for run in remaining:
        rate = rates.get(run.step, planned.get(run.step))
        if rate is None:
            continue
        known = True
        total += rate * (run.units if run.units is not None else 1.0)
    return round(total, 3) if known else None


def estimate_error(estimated: Mapping[str, Any] | None, actual: Mapping[str, Any] | None) -> float | None:
    """|estimated - actual| ÷ actual model time; None unless both are known and something was measured."""
    planned, used = _number((estimated or {}).get("model_s")), _number((actual or {}).get("model_s"))
    if planned is None or used is None or used <= 0:
        return None
    return round(abs(planned - used) / used, 4)


def _estimated_rates(estimated: Mapping[str, Any] | None) -> dict[str, float]:
    """Seconds per unit of each step of an estimate (its model time ÷ its units)."""
    rates: dict[str, float] = {}
    per_step = (estimated or {}).get("per_step")
    if not isinstance(per_step, Mapping):
        return rates
    for step, cost in per_step.items():
        if not isinstance(cost, Mapping):
            continue
        units, model_s = _number(cost.get("units")), _number(cost.get("model_s"))
        if units and model_s is not None:
            rates[str(step)] = model_s / units
    return rates


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class UnknownProfile(ValueError):
    """The GPU profile named is not one of the tenant's ``gpu.profiles``."""


def job_estimate(
    config: RuntimeConfig,
    facts: Sequence[MediaFacts],
    steps: Iterable[str] | None = None,
    gpu_profile: str | None = None,
    *,
    calibration: Callable[[str], Mapping[str, float]] | None = None,
) -> Estimate:
    """The estimate of running ``steps`` (default: the tenant's ``analysis.steps``) on the files
    ``facts`` under ``gpu_profile`` (default: the tenant's ``jobs.gpu_profile``, else its first
    profile, as the scheduler falls back), calibrated by ``calibration(profile)`` (the scheduler's:
    `aima.storage.job_queue.JobQueue.finished_pairs` through `aima.estimates.calibration`). Raises
    `UnknownProfile` for a profile named that the configuration does not have."""
    profiles = config.gpu.profiles
    if gpu_profile is not None and gpu_profile not in profiles:
        known = ", ".join(sorted(profiles))
        raise UnknownProfile(f"no GPU profile {gpu_profile!r}; the configured ones are {known}")
    name = gpu_profile or config.jobs.gpu_profile
    if name not in profiles:
        name = next(iter(profiles))
    chosen = (
        [Step(step).value for step in steps]
        if steps is not None
        else [s.value for s in config.analysis.steps]
    )
    return estimate(
        facts,
        chosen,
        name,
        profiles[name],
        frames_per_minute=config.analysis.max_frames_per_minute,
        parallel_files=config.jobs.parallel_files,
        calibration=calibration(name) if calibration is not None else None,
    )


class JobViews:
    """Views of the parent jobs of one database (and the reports of its document store), in a `Scope`."""

    def __init__(self, db: Database, documents: DocumentStore) -> None:
        self.jobs = JobRepository(db)
        self.steps = JobSteps(db)
        self._documents = documents

    def parent(self, scope: Scope, job_id: str, case_id: str | None = None) -> Job | None:
        """The parent job ``job_id`` (of ``case_id`` when given); None for a child job, a job of another
        case or one outside the scope."""
        job = self.jobs.get(scope, job_id)
        if job is None or job.parent_job_id is not None:
            return None
        if case_id is not None and job.case_id != case_id:
            return None
        return job

    def files(self, scope: Scope, job: Job) -> int:
        """How many files the job analyses (its child jobs naming a media file)."""
        return sum(1 for child in self.jobs.children(scope, job.id) if child.media_id is not None)

    def view(self, scope: Scope, job: Job, *, files: int | None = None) -> JobView:
        """The view of parent ``job``; ``files`` saves counting them again (it never changes)."""
        runs = self.steps.for_parent(scope, job.id)
        report = self.report(job) if job.phase.final else None
        count = self.files(scope, job) if files is None else files
        return compute(job, runs, files=count, report=report)

    def get(self, scope: Scope, job_id: str, case_id: str | None = None) -> JobView | None:
        """`view` of `parent`, or None."""
        job = self.parent(scope, job_id, case_id)
        return None if job is None else self.view(scope, job)

    def parents(self, scope: Scope, case_id: str, *, limit: int = 100) -> list[JobView]:
        """Views of the case's parent jobs, newest first."""
        return [self.view(scope, job) for job in self.jobs.parents(scope, case_id, limit=limit)]

    def report(self, job: Job) -> ReportRef | None:
        """The newest report version built for ``job``, if any."""
        found = self._documents.find(
            REPORTS,
            {"tenant_id": job.tenant_id, "case_id": job.case_id, "report.job_id": job.id},
            sort=[("version", -1)],
            limit=1,
        )
        if not found:
            return None
        return ReportRef(report_id=str(found[0]["report_id"]), version=int(found[0]["version"]))
