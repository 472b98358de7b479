"""A job's end: once its report is built, the job gets its final phase and what it really used.

The phase comes from its files' step outcomes: ``Succeeded`` when every step succeeded or was not
run (no model configured, not chosen), ``Failed`` when no file got any step past the probe,
``PartiallySucceeded`` otherwise. What it used (`aima.estimates.actual`: seconds per step measured
in ``job_steps``, GPU-seconds and price under the profile it was estimated with) is stored next to
its estimate, with the estimate made again on the durations the probe measured (``revised``); the
scheduler's calibration learns from that pair, so a duration guessed from a file's size does not
skew the rates.
"""

from __future__ import annotations

import logging

from aima.access.scope import Scope
from aima.domain import JobPhase, StepState
from aima.estimates import Estimate, actual, facts_of
from aima.estimates import estimate as estimate_of
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import InvalidTransition, JobRepository
from aima.storage.media import MediaRepository
from aima.storage.outcomes import OutcomeRepository
from aima.storage.schema import utcnow
from functions.runtime.deps import Deps

log = logging.getLogger(__name__)
ACTOR = "function:fuse"


class JobFinisher:
    """Gives a fused job its final phase (see module docstring)."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    def finish(self, tenant_id: str, case_id: str, job_id: str) -> None:
        db = self._deps.stores.db
        jobs = JobRepository(db)
        scope = Scope.for_case(tenant_id, case_id, ACTOR)
        job = jobs.get(scope, job_id)
        if job is None or job.phase is not JobPhase.RUNNING:
            return
        outcomes = OutcomeRepository(self._deps.stores.documents)
        files = [child.media_id for child in jobs.children(scope, job_id) if child.media_id is not None]
        good = bad = 0
        useful_files = 0
        for media_id in files:
            steps = outcomes.for_media(tenant_id, case_id, media_id)
            ok = [s for name, s in steps.items() if s.status == "succeeded" and name != "probe"]
            failed = [s for s in steps.values() if s.status == "failed"]
            good += len(ok)
            bad += len(failed)
            useful_files += 1 if ok else 0
        if bad == 0:
            phase = JobPhase.SUCCEEDED
        elif useful_files == 0:
            phase = JobPhase.FAILED
        else:
            phase = JobPhase.PARTIALLY_SUCCEEDED
        ledger = JobSteps(db)
        ledger.close_pending(scope, job_id, "not needed: the probe found nothing for this step in the file")
        runs = ledger.for_parent(scope, job_id)
        seconds: dict[str, float] = {}
        units: dict[str, float] = {}
        for run in runs:
            if run.state is StepState.SUCCEEDED and run.seconds is not None:
                seconds[run.step] = seconds.get(run.step, 0.0) + run.seconds
                units[run.step] = units.get(run.step, 0.0) + (run.units or 0.0)
        estimate = job.estimate or {}
        config = self._deps.config.effective(tenant_id)
        name = str(estimate.get("gpu_profile") or config.jobs.gpu_profile)
        profile = config.gpu.profiles.get(name) or next(iter(config.gpu.profiles.values()))
        started = job.started_at or job.created_at
        used = actual(
            seconds,
            units,
            name,
            profile,
            files=len(files),
            media_s=float(estimate.get("media_s", 0.0)),
            wall_s=max(0.0, (utcnow() - started).total_seconds()),
        )
        reason = None if phase is JobPhase.SUCCEEDED else f"{bad} step(s) failed; {good} succeeded"
        fields: dict[str, object] = {"actual": used.model_dump(mode="json")}
        if estimate:
            upfront = Estimate.model_validate(estimate)
            rows = MediaRepository(db).many(scope, files)
            revised = estimate_of(
                [facts_of(rows[m]) for m in files if m in rows],
                job.steps,
                name,
                profile,
                frames_per_minute=config.analysis.max_frames_per_minute,
                parallel_files=config.jobs.parallel_files,
                calibration=upfront.factors,
            )
            fields["estimate"] = upfront.model_copy(update={"revised": revised}).model_dump(mode="json")
        try:
            jobs.move(scope, job_id, phase, reason=reason, fields=fields)
        except InvalidTransition:
            log.info("job ended another way first", extra={"job_id": job_id})
