"""Resuming a job: re-deliver what its steps left undone, so only unfinished work runs again.

Every event a job's steps emitted is in the outbox, tagged with its job (`Outbox.for_jobs`), and
every function keeps a claim per event it settled (the processed-events ledger). `Replayer.replay`
publishes the job's events again in the order they were written: a function skips each event it
settled before, and handles the ones it never finished (its worker was killed, the job was
cancelled first). For a step that ``failed`` and was reset to ``pending`` by the resume, its
claims on the file's events are dropped first, so it runs again; the outcome fuse recorded for each
step to run again (``cancelled``, ``failed``) is dropped, so fuse waits for it. The transcriber's checkpoints
(`docs/speech.md`) then skip the chunks that were done. The job's report claim is released, so fuse
builds the report again once the files are done.

A job cancelled (or failed) before it ever started is not replayed: the scheduler starts it afresh.
Fuse still recorded its steps as ``cancelled`` and claimed its report at that first end, so
`Replayer.reset` drops those the moment it is resumed; otherwise fuse would count its files as done
and never finish it.

On NATS JetStream a message that was never acknowledged is redelivered by the stream anyway; the
replay is what makes the in-process bus (the embedded profile) resumable after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aima.access.scope import Scope
from aima.domain import Job, StepState
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import JobRepository
from aima.storage.outcomes import OutcomeRepository
from events.envelope import CloudEvent
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec

log = logging.getLogger(__name__)
ACTOR = "function:scheduler"


class Replayer:
    """Re-delivers a resumed job's events (see module docstring)."""

    def __init__(self, deps: Deps, specs: Mapping[str, FunctionSpec]) -> None:
        self._deps = deps
        self._specs = specs

    async def replay(self, job: Job) -> int:
        events = await asyncio.to_thread(self.prepare, job)
        if events:
            await self._deps.relay.publish(events)
        log.info("job replayed", extra={"job_id": job.id, "events": len(events)})
        return len(events)

    async def reset(self, job: Job) -> None:
        """Forget what the job's unfinished steps left behind, publishing nothing: for a job resumed
        before it ever started, which the scheduler then starts afresh."""
        await asyncio.to_thread(self.prepare, job)

    def prepare(self, job: Job) -> list[CloudEvent]:
        """The job's events to publish again, after dropping failed steps' claims."""
        db = self._deps.stores.db
        scope = Scope.for_case(job.tenant_id, job.case_id, ACTOR)
        children = JobRepository(db).children(scope, job.id)
        outbox = self._deps.outbox
        events = outbox.for_jobs([child.id for child in children])
        by_step = {spec.step: spec for spec in self._specs.values() if spec.step is not None}
        media_of = {child.id: child.media_id for child in children}
        outcomes = OutcomeRepository(self._deps.stores.documents)
        for run in JobSteps(db).for_parent(scope, job.id):
            spec = by_step.get(run.step)
            if spec is None or run.state is not StepState.PENDING:
                continue
            mine = [
                e.id for e in events if e.type in spec.types and (e.data or {}).get("job_id") == run.job_id
            ]
            outbox.forget(spec.name, mine)
            media_id = media_of.get(run.job_id)
            if media_id is not None:  # a cancelled or failed outcome would count the file as done
                outcomes.forget_unfinished(job.tenant_id, job.case_id, media_id, spec.name)
        outcomes.release_fusion(job.tenant_id, job.case_id, job.id)
        return events
