"""The metrics the chart's alerting rules read move when their event happens: a dead letter counts in
``aima_events_dead_lettered_total`` (directly and when the bus gives up on a failing function), and a
scheduler walk sets ``aima_jobs_queued`` and ``aima_jobs_oldest_queued_age_seconds`` per priority."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

from aima.config.service import ConfigService
from aima.domain import Job, JobPhase, Priority
from aima.settings import load_settings
from aima.storage.job_queue import JobQueue
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import JobOptions, JobRepository
from aima.storage.media import MediaRepository
from aima.storage.relational import Database
from aima.storage.schema import utcnow
from aima.telemetry.metrics import REGISTRY, render
from events.bus import Subscription
from events.bus_memory import MemoryBus
from events.catalogue import MediaFailed, MediaProbed, SensitivityScored, make_event
from events.envelope import CloudEvent
from functions.runtime.deps import Deps
from functions.runtime.dispatch import Dispatcher
from functions.runtime.host import Host
from functions.runtime.spec import FunctionSpec
from functions.scheduler.core import SchedulerCore
from tests.jobs.support import Tenant, config_service, configure, job_row, new_job, new_tenant
from tests.support import eventually

DEAD = "aima_events_dead_lettered_total"


def dead_letters(consumer: str, event_type: str = MediaProbed.TYPE) -> float | None:
    return REGISTRY.get_sample_value(DEAD, {"consumer": consumer, "type": event_type})


def queued(priority: Priority) -> float | None:
    return REGISTRY.get_sample_value("aima_jobs_queued", {"priority": priority.value})


def oldest_age(priority: Priority) -> float | None:
    return REGISTRY.get_sample_value("aima_jobs_oldest_queued_age_seconds", {"priority": priority.value})


class Broken:
    """A core that fails every time."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, data: MediaProbed, ctx: object) -> list[SensitivityScored]:
        self.calls += 1
        raise RuntimeError("disk on fire")


def spec_named(name: str, core: Broken) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        description="always fails",
        consumes=(MediaProbed,),
        emits=(SensitivityScored,),
        build=lambda deps: core,
        needs=("database", "bus"),
        analysis=False,
    )


def probed() -> CloudEvent:
    data = MediaProbed(tenant_id="t1", case_id="c1", media_id=str(uuid.uuid4()), job_id="j1", kind="image")
    return make_event(data, source="/aima/functions/probe")


async def test_a_dispatcher_counts_each_dead_letter_from_zero() -> None:
    """A new dispatcher exports 0 for every type it consumes (so the first dead letter is an increase
    a rule sees); each give_up adds one, and a type it does not consume counts as ``other``."""
    name = f"dl-{uuid.uuid4().hex[:8]}"
    dispatcher = Dispatcher(spec_named(name, Broken()), Broken(), outbox=None, relay=None)
    assert dead_letters(name) == 0
    assert f'{DEAD}{{consumer="{name}",type="{MediaProbed.TYPE}"}} 0.0' in render()[0].decode()

    await dispatcher.give_up(probed(), "RuntimeError: disk on fire")
    await dispatcher.give_up(probed(), "RuntimeError: disk on fire")
    assert dead_letters(name) == 2

    stranger = probed().model_copy(update={"type": "io.example.unknown.v1"})
    await dispatcher.give_up(stranger, "refused")
    assert dead_letters(name, "other") == 1
    assert dead_letters(name, "io.example.unknown.v1") is None
    assert dead_letters(name) == 2


async def test_the_bus_giving_up_on_a_failing_function_counts_one_dead_letter(tmp_path: Path) -> None:
    """Over the bus: three failed deliveries of one event, then the bus gives up; the counter moves
    by exactly one, when the function's media.failed goes out."""
    name = f"dl-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        profile="embedded", data_dir=tmp_path / "aima", delivery="bus", bus_max_deliver=3, bus_backoff=[0.01]
    )
    deps = Deps(settings, bus=MemoryBus())
    core = Broken()
    host = Host(deps, [spec_named(name, core)])
    failed: list[CloudEvent] = []

    async def keep(event: CloudEvent) -> list[CloudEvent]:
        failed.append(event)
        return []

    await host.start()
    try:
        await deps.bus.subscribe(Subscription("observer", (MediaFailed.TYPE,), keep))
        assert dead_letters(name) == 0
        await deps.bus.publish(probed())
        await eventually(lambda: bool(failed), timeout=20)
    finally:
        await host.stop()
    assert core.calls == 3
    assert dead_letters(name) == 1


def scheduler(db: Database, config: ConfigService, clock: list[datetime]) -> SchedulerCore:
    return SchedulerCore(
        JobQueue(db),
        JobRepository(db),
        JobSteps(db),
        MediaRepository(db),
        config.effective,
        ["probe"],
        clock=lambda: clock[0],
    )


def queued_since(db: Database, job: Job) -> datetime:
    row = job_row(db, job.id)
    entered: datetime = row["updated_at"]
    return entered if row["hold_until"] is None else max(entered, row["hold_until"])


def test_a_walk_sets_the_queue_gauges_per_priority_and_the_age_keeps_growing(sqlite_db: Database) -> None:
    """Five jobs of three priorities, one slot: the walk starts the urgent one; what it leaves is
    counted per priority, each age measured from the longest-waiting job; a job held until later is
    not counted; the ages grow with the clock without another walk; when the queue empties, all
    read 0."""
    db = sqlite_db
    tenant = new_tenant(db)
    config = config_service(db)
    configure(config, tenant.tenant_id, "jobs", {"max_running": 1})

    def add(priority: Priority) -> Job:
        return new_job(tenant, options=JobOptions(priority=priority), files=0)[0]

    urgent = add(Priority.URGENT)
    first_high, _ = add(Priority.HIGH), add(Priority.HIGH)
    normal = add(Priority.NORMAL)
    held = add(Priority.LOW)
    tenant.jobs.set_fields(tenant.scope, held.id, hold_until=utcnow() + timedelta(hours=3))
    clock = [utcnow() + timedelta(minutes=10)]
    core = scheduler(db, config, clock)

    core.schedule(tenant.tenant_id)

    assert job_row(db, urgent.id)["state"] == JobPhase.RUNNING.value
    counts = {p: queued(p) for p in Priority}
    assert counts == {Priority.URGENT: 0, Priority.HIGH: 2, Priority.NORMAL: 1, Priority.LOW: 0}
    high_age = (clock[0] - queued_since(db, first_high)).total_seconds()
    assert oldest_age(Priority.HIGH) == high_age
    assert oldest_age(Priority.NORMAL) == (clock[0] - queued_since(db, normal)).total_seconds()
    assert oldest_age(Priority.URGENT) == 0
    assert oldest_age(Priority.LOW) == 0

    clock[0] += timedelta(minutes=5)  # no walk: the wait is measured when scraped
    assert oldest_age(Priority.HIGH) == high_age + 300

    tenant.jobs.move(tenant.scope, urgent.id, JobPhase.SUCCEEDED)
    configure(config, tenant.tenant_id, "jobs", {"max_running": 10})
    core.schedule(tenant.tenant_id)
    assert {p: queued(p) for p in Priority} == dict.fromkeys(Priority, 0)
    assert {p: oldest_age(p) for p in Priority} == dict.fromkeys(Priority, 0)


def test_a_walk_of_one_tenant_keeps_the_other_tenants_part(sqlite_db: Database) -> None:
    """Tenant A's jobs wait (no free slot); a walk of tenant B alone leaves them counted; a walk of
    every tenant replaces the picture."""
    db = sqlite_db
    a, b = new_tenant(db, "a"), new_tenant(db, "b")
    config = config_service(db)
    configure(config, a.tenant_id, "jobs", {"max_running": 1})
    configure(config, b.tenant_id, "jobs", {"max_running": 1})

    def add(tenant: Tenant) -> Job:
        return new_job(tenant, options=JobOptions(priority=Priority.NORMAL), files=0)[0]

    a_jobs = [add(a) for _ in range(3)]
    clock = [utcnow() + timedelta(minutes=1)]
    core = scheduler(db, config, clock)

    core.schedule(a.tenant_id)
    assert queued(Priority.NORMAL) == 2
    add(b), add(b)
    core.schedule(b.tenant_id)
    assert queued(Priority.NORMAL) == 3  # A's two and B's one left
    assert oldest_age(Priority.NORMAL) == (clock[0] - queued_since(db, a_jobs[1])).total_seconds()

    a.jobs.move(a.scope, a_jobs[0].id, JobPhase.SUCCEEDED)
    core.schedule()
    assert queued(Priority.NORMAL) == 2  # A's third and B's second
