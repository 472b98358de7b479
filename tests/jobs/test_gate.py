"""The step ledger at the runtime's door: a Dispatcher with a StepGate around a toy core, on SQLite and
PostgreSQL. What the core returns (or raises) becomes the step's state; a cancelled job's step does
not run and its event stays unsettled for a resume; a step not chosen for the job is recorded not run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from aima.domain import Job, JobPhase
from aima.storage.job_steps import JobSteps, StepBusy
from aima.storage.outbox import Outbox
from aima.storage.relational import Database
from events.catalogue import EventData, MediaFailed, MediaProbed, ModelInfo, SensitivityScored, make_event
from events.envelope import CloudEvent
from functions.runtime.context import Context
from functions.runtime.dispatch import Dispatcher, StepFailed, StepTimeout
from functions.runtime.spec import FunctionSpec
from functions.runtime.steps import StepGate
from inference.errors import InvalidModelOutput
from tests.jobs.support import Tenant, bring_to, new_job, new_tenant, outbox_mark, outbox_since, step_row

STEP = "sensitivity"
Answer = Callable[[MediaProbed], list[EventData]]


def scored(status: str = "completed", reason: str | None = None) -> Answer:
    def answer(data: MediaProbed) -> list[EventData]:
        return [
            SensitivityScored(
                **data.media_ids(),
                model=ModelInfo(name="toy", version="0", backend="none"),
                result_count=0,
                status=status,  # type: ignore[arg-type]
                reason=reason,
            )
        ]

    return answer


def failed(reason: str) -> Answer:
    return lambda data: [MediaFailed(**data.media_ids(), step="toy", reason=reason)]


@dataclass
class Toy:
    """A core that answers with ``answer`` or raises ``error``; counts its calls."""

    answer: Answer = field(default_factory=scored)
    error: Exception | None = None
    delay: float = 0.0
    calls: int = 0

    async def handle(self, data: MediaProbed, ctx: Context) -> list[EventData]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.answer(data)


@dataclass
class World:
    db: Database
    tenant: Tenant
    parent: Job
    child: Job
    outbox: Outbox

    def dispatcher(self, core: Toy, *, timeout_s: float | None = None) -> Dispatcher:
        spec = FunctionSpec(
            name="toy",
            description="a toy step",
            consumes=(MediaProbed,),
            emits=(SensitivityScored, MediaFailed),
            build=lambda deps: core,
            step=STEP,
        )
        gate = StepGate(self.db, "toy", STEP, lease_s=30)
        return Dispatcher(spec, core, outbox=self.outbox, relay=None, gate=gate, timeout_s=timeout_s)

    def event(self, *, job: bool = True) -> CloudEvent:
        data = MediaProbed(
            tenant_id=self.tenant.tenant_id,
            case_id=self.tenant.case_id,
            media_id=self.child.media_id or "",
            job_id=self.child.id if job else None,
            kind="image",
        )
        return make_event(data, source="/aima/functions/probe")

    def step(self, step: str = STEP) -> dict[str, object] | None:
        return step_row(self.db, self.child.id, step)

    def settled(self, event: CloudEvent) -> bool:
        return self.outbox.handled("toy", event.id)


def running(db: Database, steps: tuple[str, ...] = ("probe", STEP)) -> World:
    """A running job of one file whose chosen per-file steps are planned, as the scheduler does."""
    tenant = new_tenant(db, "gate")
    parent, (child,) = new_job(tenant, steps)
    JobSteps(db).plan(tenant.scope, child, dict.fromkeys(steps, 1.0))
    bring_to(tenant, parent.id, JobPhase.RUNNING)
    return World(db, tenant, parent, child, Outbox(db))


async def test_a_step_that_succeeds_is_recorded_with_its_time(db: Database) -> None:
    """Success: the step is succeeded with the seconds it ran and one attempt, the event settled and
    its emitted event in the outbox."""
    world = running(db)
    core, event, mark = Toy(), world.event(), outbox_mark(db)

    emitted = await world.dispatcher(core).dispatch(event)

    assert core.calls == 1
    row = world.step()
    assert row is not None
    assert (row["state"], row["attempts"], row["lease_until"]) == ("succeeded", 1, None)
    assert isinstance(row["seconds"], float)
    assert row["seconds"] >= 0
    assert str(row["worker"]).endswith(":toy")
    assert world.settled(event)
    assert [e.id for e in outbox_since(db, mark)] == [e.id for e in emitted]


async def test_a_core_that_returns_not_run_records_not_run(db: Database) -> None:
    """A result with status not_run (no model configured) ends the step not_run with its reason."""
    world = running(db)
    event = world.event()
    await world.dispatcher(Toy(scored("not_run", "no model for sensitivity"))).dispatch(event)
    row = world.step()
    assert row is not None
    assert (row["state"], row["reason"]) == ("not_run", "no model for sensitivity")
    assert world.settled(event)


async def test_a_core_that_returns_media_failed_records_failed(db: Database) -> None:
    """A media.failed result ends the step failed with the file's reason."""
    world = running(db)
    await world.dispatcher(Toy(failed("unreadable frames"))).dispatch(world.event())
    row = world.step()
    assert row is not None
    assert (row["state"], row["reason"]) == ("failed", "unreadable frames")


async def test_an_exception_gives_the_step_back_for_the_retry(db: Database) -> None:
    """A transient error: the step is pending again (lease freed, the error as reason), the event not
    settled; the redelivery runs it as attempt 2 and it succeeds."""
    world = running(db)
    event = world.event()
    with pytest.raises(RuntimeError, match="disk on fire"):
        await world.dispatcher(Toy(error=RuntimeError("disk on fire"))).dispatch(event)

    row = world.step()
    assert row is not None
    assert (row["state"], row["lease_until"], row["attempts"]) == ("pending", None, 1)
    assert "disk on fire" in str(row["reason"])
    assert not world.settled(event)

    await world.dispatcher(Toy()).dispatch(event)
    row = world.step()
    assert row is not None
    assert (row["state"], row["attempts"]) == ("succeeded", 2)


async def test_a_timeout_gives_the_step_back(db: Database) -> None:
    """A core past its timeout: StepTimeout, the step pending again, the event not settled."""
    world = running(db)
    event = world.event()
    with pytest.raises(StepTimeout):
        await world.dispatcher(Toy(delay=5), timeout_s=0.05).dispatch(event)
    row = world.step()
    assert row is not None
    assert row["state"] == "pending"
    assert not world.settled(event)


async def test_a_permanent_model_error_fails_the_step(db: Database) -> None:
    """A model error that cannot succeed on a retry: StepFailed (dead-lettered) and the step failed."""
    world = running(db)
    with pytest.raises(StepFailed):
        await world.dispatcher(Toy(error=InvalidModelOutput("garbled"))).dispatch(world.event())
    row = world.step()
    assert row is not None
    assert row["state"] == "failed"
    assert "garbled" in str(row["reason"])


async def test_a_cancelled_jobs_step_does_not_run_and_its_event_waits_for_a_resume(db: Database) -> None:
    """Cancelled job: the core is not called, the step is cancelled, the event is NOT settled; after a
    resume (and the scheduler starting the job again) the same event runs the step."""
    world = running(db)
    world.tenant.jobs.cancel(world.tenant.scope, world.parent.id, by="alice")
    core, event = Toy(), world.event()

    assert await world.dispatcher(core).dispatch(event) == []

    assert core.calls == 0
    row = world.step()
    assert row is not None
    assert row["state"] == "cancelled"
    assert not world.settled(event)

    world.tenant.jobs.resume(world.tenant.scope, world.parent.id)
    bring_to(world.tenant, world.parent.id, JobPhase.RUNNING)
    await world.dispatcher(core).dispatch(event)
    assert core.calls == 1
    row = world.step()
    assert row is not None
    assert row["state"] == "succeeded"
    assert world.settled(event)


async def test_a_cancelled_jobs_pending_step_is_recorded_cancelled_by_the_gate(db: Database) -> None:
    """The gate records the cancellation itself: a Cancelled job whose step is still pending in the
    ledger (moved by JobRepository.move, which leaves steps alone) gets the step cancelled, and the
    core does not run."""
    world = running(db)
    world.tenant.jobs.move(world.tenant.scope, world.parent.id, JobPhase.CANCELLED)
    core = Toy()
    assert await world.dispatcher(core).dispatch(world.event()) == []
    assert core.calls == 0
    row = world.step()
    assert row is not None
    assert (row["state"], row["reason"]) == ("cancelled", "job cancelled")


async def test_a_step_not_chosen_for_the_job_is_recorded_not_run(db: Database) -> None:
    """A job that chose only the probe, its steps planned as the scheduler plans them (the chosen ones):
    the sensitivity event does not run the core, and the ledger records the step not_run ("not chosen
    for this job"), as functions/runtime/steps.py promises."""
    world = running(db, ("probe",))
    core, event = Toy(), world.event()

    assert await world.dispatcher(core).dispatch(event) == []

    assert core.calls == 0
    assert not world.settled(event)
    row = world.step()
    assert row is not None, "the not-chosen step left no trace in the ledger"
    assert (row["state"], row["reason"]) == ("not_run", "not chosen for this job")


async def test_a_step_another_worker_holds_is_refused(db: Database) -> None:
    """Another worker's lease holds: StepBusy (the bus retries later), the core is not called, the event
    is not settled and the step stays the other worker's."""
    world = running(db)
    JobSteps(db).begin(world.tenant.scope, world.child, STEP, worker="other", lease_s=60)
    core, event = Toy(), world.event()

    with pytest.raises(StepBusy):
        await world.dispatcher(core).dispatch(event)

    assert core.calls == 0
    assert not world.settled(event)
    row = world.step()
    assert row is not None
    assert (row["state"], row["worker"]) == ("running", "other")


async def test_a_step_that_ended_does_not_run_twice(db: Database) -> None:
    """A second event for a step that succeeded (another delivery, another id) is skipped: the core is
    not called and the row keeps its first end."""
    world = running(db)
    await world.dispatcher(Toy()).dispatch(world.event())
    before = world.step()
    core = Toy()
    assert await world.dispatcher(core).dispatch(world.event()) == []
    assert core.calls == 0
    assert world.step() == before


async def test_an_event_about_no_job_runs_untracked(db: Database) -> None:
    """An event without a job id (a file outside any job) runs the core and records no step."""
    world = running(db)
    core, event = Toy(), world.event(job=False)
    await world.dispatcher(core).dispatch(event)
    assert core.calls == 1
    assert world.settled(event)
    row = world.step()
    assert row is not None
    assert (row["state"], row["attempts"]) == ("pending", 0)
