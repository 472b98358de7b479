"""The scheduler function: the job queue's one consumer (priorities, limits, estimates, approvals)."""

from __future__ import annotations

from aima.storage.job_queue import JobQueue
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from events.catalogue import JobCreated, JobFinished, SchedulingRequested
from functions.runtime.deps import Deps
from functions.runtime.replay import Replayer
from functions.runtime.spec import FunctionSpec, Resources, discover
from functions.scheduler.core import SchedulerCore


def build(deps: Deps) -> SchedulerCore:
    """A core on the process's stores; the per-file steps come from the function specs."""
    db = deps.stores.db
    specs = discover()
    per_file = [spec.step for spec in specs.values() if spec.step is not None]
    replayer = Replayer(deps, specs)
    return SchedulerCore(
        JobQueue(db),
        JobRepository(db),
        JobSteps(db),
        MediaRepository(db),
        deps.config.effective,
        per_file,
        replay=replayer.replay,
        reset=replayer.reset,
    )


SPEC = FunctionSpec(
    name="scheduler",
    description="admits queued jobs by priority within tenant limits; estimates, holds for approval, starts",
    consumes=(JobCreated, JobFinished, SchedulingRequested),
    build=build,
    needs=("database", "bus"),
    resources=Resources(cpu="250m", memory="256Mi", concurrency=1, timeout_s=120, min_scale=1, max_scale=1),
    port=8094,
    analysis=True,
)
