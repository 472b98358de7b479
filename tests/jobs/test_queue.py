"""The queue and the scheduler, on SQLite and PostgreSQL: priority order under 50 jobs, per-tenant
limits under concurrent admission, other tenants unaffected, low-priority hours, GPU-seconds per day
and approvals, with tenant settings stored through the real configuration service."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from aima.config.service import ConfigService
from aima.domain import Job, JobPhase, MediaKind, Priority, StepState
from aima.estimates import Estimate
from aima.storage.job_queue import JobQueue
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import JobOptions, JobRepository
from aima.storage.media import MediaRepository
from aima.storage.relational import Database
from aima.storage.schema import utcnow
from events.catalogue import JobCreated, MediaUploaded, make_event
from events.envelope import derived_event_id
from functions.runtime.context import Context
from functions.scheduler.core import SchedulerCore
from tests.jobs.support import (
    Tenant,
    config_service,
    configure,
    job_row,
    new_job,
    new_tenant,
    outbox_mark,
    outbox_since,
    phases,
    race,
    step_row,
)

PER_FILE = [
    "probe",
    "transcribe",
    "speakers",
    "cues",
    "faces",
    "persons",
    "pose",
    "vision",
    "ocr",
    "sensitivity",
]
ORDER = [Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW]


def scheduler(db: Database, config: ConfigService, clock: Callable[[], datetime] = utcnow) -> SchedulerCore:
    """The scheduler's core on ``db``, reading tenant settings from the configuration service."""
    return SchedulerCore(
        JobQueue(db),
        JobRepository(db),
        JobSteps(db),
        MediaRepository(db),
        config.effective,
        PER_FILE,
        clock=clock,
    )


def queue_of_50(tenant: Tenant, seed: int = 50) -> tuple[list[Job], list[str]]:
    """50 jobs of random priorities created in random order (fixed seed); returns them in creation order
    and their ids in the order they must start: urgent, high, normal, low, first come first served."""
    rng = random.Random(seed)
    priorities = [p for p in ORDER for _ in range(5)] + [rng.choice(ORDER) for _ in range(30)]
    rng.shuffle(priorities)
    created = [
        tenant.jobs.create_parent(tenant.scope, tenant.case_id, ["probe"], JobOptions(priority=p))
        for p in priorities
    ]
    expected = sorted(range(len(created)), key=lambda i: (ORDER.index(created[i].priority), i))
    return created, [created[i].id for i in expected]


def test_fifty_jobs_wait_urgent_first_then_high_normal_low_in_arrival_order(db: Database) -> None:
    """waiting() lists 50 queued jobs by priority class, first come first served within a class; a job
    held until later is left out until then, and then takes its place again."""
    tenant = new_tenant(db)
    created, order = queue_of_50(tenant)
    queue = JobQueue(db)
    assert [job.id for job in queue.waiting(tenant_id=tenant.tenant_id)] == order

    later = utcnow() + timedelta(hours=1)
    held = {job.id for job in created[::7]}
    for job_id in held:
        tenant.jobs.set_fields(tenant.scope, job_id, hold_until=later)
    assert [job.id for job in queue.waiting(tenant_id=tenant.tenant_id)] == [
        i for i in order if i not in held
    ]
    after = queue.waiting(now=later + timedelta(seconds=1), tenant_id=tenant.tenant_id)
    assert [job.id for job in after] == order


def test_the_scheduler_admits_max_running_in_priority_order_then_the_next_ones(db: Database) -> None:
    """With max_running 3 one walk starts exactly the first three jobs of the order; when two finish,
    the next walk starts the next two, and never more than three run."""
    tenant = new_tenant(db)
    config = config_service(db)
    configure(config, tenant.tenant_id, "jobs", {"max_running": 3})
    _, order = queue_of_50(tenant, seed=3)
    core = scheduler(db, config)

    core.schedule(tenant.tenant_id)
    states = phases(db, order)
    assert [i for i in order if states[i] == "Running"] == order[:3]
    assert {states[i] for i in order[3:]} == {"Queued"}

    for job_id in order[:2]:
        tenant.jobs.move(tenant.scope, job_id, JobPhase.SUCCEEDED)
    core.schedule(tenant.tenant_id)
    states = phases(db, order)
    assert [i for i in order if states[i] == "Running"] == order[2:5]
    assert {states[i] for i in order[5:]} == {"Queued"}
    assert JobQueue(db).active(tenant.tenant_id) == 3


@pytest.mark.parametrize("how", ["admit", "admit_many", "schedule"])
def test_concurrent_admits_never_pass_the_tenants_limit(db: Database, how: str) -> None:
    """Four schedulers admit the same 20 queued jobs of one tenant at once with max_running 5, one job
    at a time (admit), a walk's batch (admit_many) or whole scheduler walks: exactly five are admitted,
    each once (PostgreSQL: the per-tenant advisory lock; SQLite: serial writers)."""
    tenant = new_tenant(db)
    config = config_service(db)
    configure(config, tenant.tenant_id, "jobs", {"max_running": 5})
    queued = [tenant.jobs.create_parent(tenant.scope, tenant.case_id, ["probe"]) for _ in range(20)]
    queue = JobQueue(db)
    listed = queue.waiting(tenant_id=tenant.tenant_id)
    assert len(listed) == 20

    def admit(i: int) -> list[str]:
        jobs = random.Random(i).sample(listed, len(listed))
        if how == "admit":
            return [j.id for j in jobs if queue.admit(j, max_running=5) is not None]
        if how == "admit_many":
            return [j.id for j in queue.admit_many(tenant.tenant_id, jobs, max_running=5)]
        scheduler(db, config).schedule(tenant.tenant_id)
        return []

    results = race(4, admit)

    assert not [r for r in results if isinstance(r, Exception)], results
    states = phases(db, [j.id for j in queued])
    active = sorted(job_id for job_id, s in states.items() if s in ("Estimating", "Running"))
    assert len(active) == 5, states
    if how != "schedule":
        admitted = [job_id for result in results for job_id in result]  # type: ignore[union-attr]
        assert sorted(admitted) == active
    assert queue.active(tenant.tenant_id) == 5


def test_a_full_tenant_does_not_block_another(fresh_db: Database) -> None:
    """One walk of every tenant's queue: tenant A's urgent jobs fill its two slots and the rest of A
    waits, while tenant B's later, lower jobs still start in B's own slots."""
    db = fresh_db
    a, b = new_tenant(db, "a"), new_tenant(db, "b")
    config = config_service(db)
    for tenant in (a, b):
        configure(config, tenant.tenant_id, "jobs", {"max_running": 2})
    a_jobs = [new_job(a, options=JobOptions(priority=Priority.URGENT), files=0)[0].id for _ in range(5)]
    b_jobs = [new_job(b, options=JobOptions(priority=Priority.LOW), files=0)[0].id for _ in range(3)]

    scheduler(db, config).schedule()

    states = phases(db, a_jobs + b_jobs)
    assert [states[i] for i in a_jobs] == ["Running"] * 2 + ["Queued"] * 3
    assert [states[i] for i in b_jobs] == ["Running"] * 2 + ["Queued"]


def at_hour(hour: int) -> Callable[[], datetime]:
    return lambda: datetime(2026, 3, 4, hour, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "hour", "admitted"),
    [
        ((22, 6), 12, False),
        ((22, 6), 21, False),
        ((22, 6), 22, True),
        ((22, 6), 2, True),
        ((22, 6), 5, True),
        ((22, 6), 6, False),
        ((9, 17), 9, True),
        ((9, 17), 16, True),
        ((9, 17), 17, False),
        ((9, 17), 3, False),
    ],
)
def test_low_priority_jobs_start_only_in_the_tenants_hours(
    db: Database, hours: tuple[int, int], hour: int, admitted: bool
) -> None:
    """A low job outside jobs.low_priority_hours (UTC [start, end), across midnight too) stays queued
    while a normal job beside it starts; inside the hours it starts as well."""
    tenant = new_tenant(db)
    config = config_service(db)
    configure(config, tenant.tenant_id, "jobs", {"low_priority_hours": list(hours), "max_running": 5})
    low = new_job(tenant, options=JobOptions(priority=Priority.LOW), files=0)[0]
    normal = new_job(tenant, files=0)[0]

    scheduler(db, config, clock=at_hour(hour)).schedule(tenant.tenant_id)

    states = phases(db, [low.id, normal.id])
    assert states[normal.id] == "Running"
    assert states[low.id] == ("Running" if admitted else "Queued")


def gpu_profile(name: str, *, price_per_hour: float = 36.0) -> dict[str, object]:
    """A GPU profile: transcribe takes 1 s per audio second on one GPU."""
    return {
        name: {
            "gpu": "test-gpu",
            "count": 1,
            "price_per_hour": price_per_hour,
            "seconds_per_unit": {"probe": 0.0, "transcribe": 1.0},
            "gpu_steps": ["transcribe"],
        }
    }


def gpu_tenant(db: Database, **jobs: object) -> tuple[Tenant, ConfigService, str]:
    """A tenant whose jobs run under a GPU profile of its own, with ``jobs`` settings."""
    tenant = new_tenant(db, "gpu")
    name = f"gpu-{tenant.tenant_id[-12:]}"  # its own profile: no other test's jobs calibrate it
    config = config_service(db)
    configure(config, tenant.tenant_id, "gpu", {"profiles": gpu_profile(name)})
    configure(config, tenant.tenant_id, "jobs", {"gpu_profile": name, "max_running": 5, **jobs})
    return tenant, config, name


def audio_job(tenant: Tenant, seconds: float = 100.0, **options: object) -> Job:
    """A job transcribing one probed audio file of ``seconds``."""
    parent, _ = new_job(
        tenant,
        ("probe", "transcribe"),
        options=JobOptions(**options),  # type: ignore[arg-type]
        kind=MediaKind.AUDIO,
        size=1_000_000,
        content_type="audio/mpeg",
        duration_s=seconds,
    )
    return parent


def test_a_job_past_the_days_gpu_seconds_is_held_until_tomorrow(db: Database) -> None:
    """Budget 150 GPU-s a day, jobs of 100: the first starts; the second is put back in the queue held
    until the next UTC midnight with a reason, is not listed before then, and starts the next day."""
    tenant, config, _ = gpu_tenant(db, gpu_seconds_per_day=150)
    first, second = audio_job(tenant), audio_job(tenant)
    today = utcnow()
    core = scheduler(db, config, clock=lambda: today)

    core.schedule(tenant.tenant_id)

    assert job_row(db, first.id)["state"] == "Running"
    assert job_row(db, first.id)["estimate"]["gpu_s"] == pytest.approx(100.0)
    held = job_row(db, second.id)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    assert held["state"] == "Queued"
    assert held["hold_until"] == midnight
    assert "GPU-seconds" in held["reason"]
    assert "held until tomorrow" in held["reason"]
    assert JobQueue(db).waiting(now=today, tenant_id=tenant.tenant_id) == []

    core.schedule(tenant.tenant_id)  # still today: nothing changes
    assert job_row(db, second.id)["state"] == "Queued"

    tomorrow = midnight + timedelta(minutes=1)
    scheduler(db, config, clock=lambda: tomorrow).schedule(tenant.tenant_id)
    assert job_row(db, second.id)["state"] == "Running"
    assert job_row(db, second.id)["reason"] is None


def test_a_job_without_gpu_work_is_never_held(db: Database) -> None:
    """A budget of 0 GPU-seconds holds nothing that uses no GPU (probe only)."""
    tenant, config, _ = gpu_tenant(db, gpu_seconds_per_day=0)
    parent, _ = new_job(tenant, ("probe",), kind=MediaKind.AUDIO, content_type="audio/mpeg", duration_s=10.0)
    scheduler(db, config).schedule(tenant.tenant_id)
    assert job_row(db, parent.id)["state"] == "Running"


def test_a_job_that_asks_for_approval_waits_for_it_then_runs(db: Database) -> None:
    """require_approval: the estimated job waits in AwaitingApproval and holds no running slot;
    approve puts it back in the queue and the next walk runs it."""
    tenant, config, _ = gpu_tenant(db, max_running=2)
    asking = audio_job(tenant, require_approval=True)
    other = audio_job(tenant)
    core = scheduler(db, config)

    core.schedule(tenant.tenant_id)

    row = job_row(db, asking.id)
    assert row["state"] == "AwaitingApproval"
    assert row["reason"] == "the job asks for approval"
    assert row["estimate"] is not None
    assert job_row(db, other.id)["state"] == "Running"
    assert JobQueue(db).active(tenant.tenant_id) == 1

    tenant.jobs.approve(tenant.scope, asking.id, by="boss")
    core.schedule(tenant.tenant_id)
    row = job_row(db, asking.id)
    assert (row["state"], row["approved_by"]) == ("Running", "boss")


@pytest.mark.parametrize("why", ["approval", "gpu-budget"])
def test_a_held_job_leaves_its_slot_to_the_next_job_in_the_same_walk(db: Database, why: str) -> None:
    """max_running 1 and a queue of two: the first job is held (it asks for approval, or the day's
    GPU-seconds are used up), so it holds no slot and the same walk starts the second. Nothing else
    would wake the scheduler: neither hold asks for scheduling, and no job runs to finish."""
    if why == "approval":
        tenant, config, _ = gpu_tenant(db, max_running=1)
        first = audio_job(tenant, require_approval=True)
    else:
        tenant, config, _ = gpu_tenant(db, max_running=1, gpu_seconds_per_day=50)
        first = audio_job(tenant, 100.0)
    second, _ = new_job(tenant, ("probe",), kind=MediaKind.AUDIO, content_type="audio/mpeg", duration_s=10.0)

    scheduler(db, config).schedule(tenant.tenant_id)

    assert job_row(db, first.id)["state"] == ("AwaitingApproval" if why == "approval" else "Queued")
    assert job_row(db, second.id)["state"] == "Running", "a free slot and a startable job, left idle"


def test_a_job_costing_more_than_the_threshold_waits_for_approval(db: Database) -> None:
    """approval_above_cost 0.5: a job estimated at 1.00 (100 GPU-s at 36/h) waits, a cheaper one runs;
    once approved, the dear one runs on the next walk."""
    tenant, config, _ = gpu_tenant(db, approval_above_cost=0.5)
    dear, cheap = audio_job(tenant, 100.0), audio_job(tenant, 10.0)
    core = scheduler(db, config)

    core.schedule(tenant.tenant_id)

    row = job_row(db, dear.id)
    assert row["state"] == "AwaitingApproval"
    assert row["reason"] == "estimated cost 1.00 USD is above 0.50"
    assert row["estimate"]["cost"] == pytest.approx(1.0)
    assert job_row(db, cheap.id)["state"] == "Running"

    tenant.jobs.approve(tenant.scope, dear.id, by="boss")
    core.schedule(tenant.tenant_id)
    assert job_row(db, dear.id)["state"] == "Running"


def test_a_started_job_plans_its_files_steps_and_sends_their_uploads(db: Database) -> None:
    """Start: each file's per-file steps are planned pending with their units, the job is Running with a
    start time, and one media.uploaded per file (id derived from the child job) goes out with the move."""
    tenant, config, _ = gpu_tenant(db)
    parent, children = new_job(
        tenant,
        ("probe", "transcribe", "faces", "report"),
        files=2,
        kind=MediaKind.VIDEO,
        duration_s=60.0,
    )
    mark = outbox_mark(db)

    scheduler(db, config).schedule(tenant.tenant_id)

    row = job_row(db, parent.id)
    assert row["state"] == "Running"
    assert row["started_at"] is not None
    assert row["estimate"]["files"] == 2
    for child in children:
        planned = {s: step_row(db, child.id, s) for s in ("probe", "transcribe", "faces", "fuse")}
        assert planned["fuse"] is None  # not a per-file step
        assert {s: (r["state"], r["units"]) for s, r in planned.items() if r} == {
            "probe": (StepState.PENDING.value, 1.0),
            "transcribe": (StepState.PENDING.value, 60.0),
            "faces": (StepState.PENDING.value, 60.0),
        }
    uploads = [e for e in outbox_since(db, mark) if e.type == MediaUploaded.TYPE]
    assert sorted(e.id for e in uploads) == sorted(
        derived_event_id(c.id, MediaUploaded.TYPE) for c in children
    )
    assert all(e.data is not None and e.data["job_id"] in {c.id for c in children} for e in uploads)


def test_a_finished_jobs_actual_calibrates_the_next_estimate(db: Database) -> None:
    """A job that used twice its estimate under a profile makes the next job's estimate under that
    profile twice as long (finished_pairs, then calibration)."""
    tenant, config, name = gpu_tenant(db)
    first = audio_job(tenant)
    core = scheduler(db, config)
    core.schedule(tenant.tenant_id)
    est = Estimate.model_validate(job_row(db, first.id)["estimate"])
    doubled = est.model_copy(
        update={
            "per_step": {s: c.model_copy(update={"model_s": 2 * c.model_s}) for s, c in est.per_step.items()},
            "model_s": 2 * est.model_s,
            "basis": "measured",
        }
    )
    tenant.jobs.move(
        tenant.scope, first.id, JobPhase.SUCCEEDED, fields={"actual": doubled.model_dump(mode="json")}
    )
    assert JobQueue(db).finished_pairs(name) == [(est, doubled)]

    second = audio_job(tenant)
    core.schedule(tenant.tenant_id)
    assert job_row(db, second.id)["estimate"]["per_step"]["transcribe"]["model_s"] == pytest.approx(200.0)


async def test_the_scheduler_walks_the_queue_on_a_parents_creation_only(db: Database) -> None:
    """handle(): a child's job.created schedules nothing; its parent's starts the queued job."""
    tenant, config, _ = gpu_tenant(db)
    parent, (child,) = new_job(tenant)
    core = scheduler(db, config)

    def created(job: Job) -> JobCreated:
        return JobCreated(
            tenant_id=job.tenant_id, case_id=job.case_id, job_id=job.id, parent_job_id=job.parent_job_id
        )

    ctx = Context("scheduler", make_event(created(child), source="/test"))
    assert await core.handle(created(child), ctx) == []
    assert job_row(db, parent.id)["state"] == "Queued"
    assert await core.handle(created(parent), ctx) == []
    assert job_row(db, parent.id)["state"] == "Running"


def test_a_job_cancelled_while_queued_is_not_started(db: Database) -> None:
    """A cancelled job is not in the queue: the walk starts the others and leaves it cancelled."""
    tenant, config, _ = gpu_tenant(db)
    cancelled, kept = new_job(tenant, files=0)[0], new_job(tenant, files=0)[0]
    tenant.jobs.cancel(tenant.scope, cancelled.id, by="alice")
    scheduler(db, config).schedule(tenant.tenant_id)
    assert phases(db, [cancelled.id, kept.id]) == {cancelled.id: "Cancelled", kept.id: "Running"}
