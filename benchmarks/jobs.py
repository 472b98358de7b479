"""Jobs: the scheduler's overhead per job against its bus's own latency; the estimates' error.

Run ``python benchmarks/jobs.py`` with PostgreSQL, Redis and NATS JetStream on 127.0.0.1 (as
``make bench`` has them). Two parts.

**Scheduling overhead** (issue #17), once per bus, each in this one process as a deployment runs it:

* *in-process bus*: the embedded profile (SQLite in a temporary folder);
* *NATS*: the cluster profile: a fresh PostgreSQL database, NATS JetStream on a stream and subject
  root of its own, Redis under a key prefix of its own, local objects; all removed afterwards.

A `functions.runtime.host.Host` runs the scheduler function (`functions/scheduler`) and its outbox
relay, as ``aima serve scheduler`` does. Each measurement queues ``JOBS`` jobs of a fresh tenant
(``jobs.max_running`` = 1000, so every one may start): a parent and one child each, a media row per
child (a 4 MB MP4, not probed yet), every step of the default pipeline, all committed and none
announced (`JobRepository.create_parent`/``create_child`` with ``announce=False``). A consumer of
``io.aima.media.uploaded.v1`` records when each job's start event arrives: there the probe would
begin, the job's first step running.

* **scheduler per job** = (arrival of the last start event - submit) ÷ ``JOBS``, after one
  ``io.aima.job.scheduling.requested.v1`` for the tenant: one walk of the queue admits and starts all
  of them (`SchedulerCore.schedule`), so this is the scheduler's own cost per job plus the bus hop of
  each start event. The median and p95 of each job's arrival - submit are printed too.
* **bus per event** (the baseline: same bus, same process, same round): ``JOBS`` events of a
  ``media.uploaded``'s size published one after another through the same signing bus (each publish
  awaited) while a consumer takes them; (arrival of the last - first publish) ÷ ``JOBS``, with the
  median and p95 of each event's publish → consume (on the in-process bus a publish does not yield,
  so every event waits for the last publish: that latency is the batch's, not a hop's). The same
  events in one ``publish_many`` are printed alongside.
* ``ROUNDS`` rounds, alternating which of the two goes first, a fresh queue each round; the check
  is the median over the rounds of scheduler per job ÷ bus per event: ≤ 2 for each bus.
* Once more after the rounds (printed, not a check): the submit as ingest makes it, the jobs' own
  ``job.created`` events (parent, then child, job by job) in one ``publish_many``: the scheduler
  handles all 2 x ``JOBS`` of them, a walk of the queue per parent.

While a submit is measured, thin wrappers (a ``perf_counter`` pair a call, switched off otherwise)
time the scheduler's repository calls, the dispatcher's ledger, the relay and the signing, and
SQLAlchemy's engine events count the transactions and time the driver's statements and commits,
apart for the scheduler's thread: that is the profile printed per job.

**Estimate error** (`benchmarks/_jobs_estimate.py`): the main job (`aima.cli.analyze.run_analysis`,
embedded profile) twice, each in a process of its own as ``aima analyze`` runs, in one data folder,
on generated media of the same kinds (a 40 s and a 50 s video with speech and faces, a notice, a
spoken WAV): what the scheduler estimated, what the job used, and |estimate - actual| ÷ actual of
the model time, for the first job (uncalibrated) and the second (calibrated by the first).

``AIMA_BENCH_JOBS`` (default 1000, at most 1000: ``jobs.max_running``'s ceiling),
``AIMA_BENCH_JOBS_ROUNDS`` (3), ``AIMA_BENCH_JOBS_PARTS`` (``schedule,estimate``) and
``AIMA_BENCH_JOBS_VIDEO_SECONDS`` (``40,50``) make smaller runs for development. The last line is
one JSON object with the checks; the exit code is 0 whatever the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

JOBS = max(1, min(1000, int(os.environ.get("AIMA_BENCH_JOBS", "1000"))))
ROUNDS = int(os.environ.get("AIMA_BENCH_JOBS_ROUNDS", "3"))
PARTS = set(os.environ.get("AIMA_BENCH_JOBS_PARTS", "schedule,estimate").split(","))
RATIO_TARGET = 2.0
NATS_URL = os.environ.get("AIMA_TEST_NATS", "nats://127.0.0.1:4222")
PG_ADMIN_DSN = os.environ.get("AIMA_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AIMA_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PING_TYPE = "io.aima.bench.ping.v1"
ACTOR = "benchmark"
WAIT_S = 900.0
"""How long a measurement may wait for its events before the benchmark gives up."""


def check(name: str, value: float, op: str, target: float) -> dict[str, object]:
    ok = value >= target if op == ">=" else value <= target
    return {"name": name, "value": round(value, 4), "op": op, "target": target, "ok": ok}


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


# --- timing the calls ----------------------------------------------------------------------------

SCHEDULER = "the scheduler's thread"
OTHERS = "other threads (dispatch, relay)"
_LOCAL = threading.local()


@dataclass
class Calls:
    """Wall and CPU seconds and counts of the wrapped calls, and the database's work, while ``on``."""

    on: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, seconds: float, cpu: float | None = None) -> None:
        with self._lock:
            self.seconds[label] += seconds
            self.counts[label] += 1
            if cpu is not None:
                self.cpu[label] += cpu

    def reset(self) -> None:
        with self._lock:
            self.seconds = defaultdict(float)
            self.cpu = defaultdict(float)
            self.counts = defaultdict(int)

    def snapshot(self) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
        with self._lock:
            return dict(self.seconds), dict(self.cpu), dict(self.counts)


CALLS = Calls()

TIMED: tuple[tuple[str, str, str], ...] = (
    # (module, attribute, label); a label's indent says it is part of the row above
    ("functions.scheduler.core", "SchedulerCore.schedule", "schedule(): the walk of the queue"),
    ("aima.storage.job_queue", "JobQueue.waiting", "  list the waiting jobs"),
    ("aima.config.service", "ConfigService.effective", "  the tenant's configuration (cache)"),
    ("aima.storage.job_queue", "JobQueue.admit_many", "  admit: lock, count, move to Estimating"),
    ("aima.storage.jobs", "JobRepository.children_of", "  read the children"),
    ("aima.storage.media", "MediaRepository.many", "  read the media rows"),
    ("aima.storage.job_queue", "JobQueue.finished_pairs", "  calibration: finished jobs' pairs"),
    ("aima.storage.job_queue", "JobQueue.gpu_seconds_since", "  GPU-seconds used today"),
    ("functions.scheduler.core", "job_estimate", "  estimate (aima.job_view.job_estimate)"),
    ("functions.scheduler.core", "start_event", "  build a media.uploaded"),
    ("aima.storage.jobs", "JobRepository.start_many", "  start: one transaction"),
    ("aima.storage.jobs", "announce_phase", "    of it: build a job.progressed"),
    ("aima.storage.outbox", "Outbox.add", "    of it: write outbox rows"),
    ("sqlalchemy.orm.session", "Session.execute", "any statement: Session.execute"),
    ("aima.storage.scoped", "confine", "  of it: the scope guard"),
    ("aima.storage.jobs", "job_of", "  of it: a returned row into a Job"),
    ("aima.storage.outbox", "Outbox.handled", "dispatch: settled before? (an event)"),
    ("aima.storage.outbox", "Outbox.settle", "dispatch: settle the event (ledger)"),
    ("events.relay", "OutboxRelay.flush", "relay: sweep (pending rows, publish)"),
    ("aima.storage.outbox", "Outbox.pending", "  of it: read pending rows"),
    ("events.relay", "OutboxRelay.publish", "relay: publish, mark published"),
    ("events.signing", "EventSigner.sign", "  of it: sign an event"),
    ("aima.storage.outbox", "Outbox.mark_published", "  of it: mark published"),
)
"""Calls timed while a submit is measured. The scheduler's walk runs in one worker thread (under
the core's lock), the dispatcher and the relay on the event loop and in other worker threads."""


def instrument() -> Callable[[], None]:
    """Wrap `TIMED` (sync and async) to add to `CALLS` while it is on, and mark the scheduler's
    thread while ``schedule`` runs; returns undo."""
    import importlib
    import inspect

    undo: list[tuple[Any, str, Any]] = []

    def replace(owner: Any, name: str, wrapper: Any) -> None:
        undo.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, wrapper)

    for module_name, path, label in TIMED:
        module = importlib.import_module(module_name)
        owner_name, _, name = path.rpartition(".")
        owner = getattr(module, owner_name, None) if owner_name else module
        original = getattr(owner, "__dict__", {}).get(name)
        if original is None:  # renamed or gone: that row is left out of the table
            continue
        if inspect.iscoroutinefunction(original):

            async def timed_async(*args: Any, _f: Any = original, _l: str = label, **kwargs: Any) -> Any:
                if not CALLS.on:
                    return await _f(*args, **kwargs)
                started = time.perf_counter()
                try:
                    return await _f(*args, **kwargs)
                finally:
                    CALLS.add(_l, time.perf_counter() - started)

            replace(owner, name, functools.wraps(original)(timed_async))
        else:

            def timed(*args: Any, _f: Any = original, _l: str = label, **kwargs: Any) -> Any:
                if not CALLS.on:
                    return _f(*args, **kwargs)
                started, cpu = time.perf_counter(), time.thread_time()
                try:
                    return _f(*args, **kwargs)
                finally:
                    CALLS.add(_l, time.perf_counter() - started, time.thread_time() - cpu)

            replace(owner, name, functools.wraps(original)(timed))

    from functions.scheduler.core import SchedulerCore

    walk = SchedulerCore.__dict__["schedule"]

    def schedule(self: Any, tenant_id: str | None = None) -> Any:
        _LOCAL.scheduler = True
        try:
            return walk(self, tenant_id)
        finally:
            _LOCAL.scheduler = False

    replace(SchedulerCore, "schedule", functools.wraps(walk)(schedule))

    def restore() -> None:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)

    return restore


def watch_database(engine: Any) -> None:
    """Count transactions and time the driver's statements and commits, by thread side, into `CALLS`."""
    from sqlalchemy import event

    def side() -> str:
        return SCHEDULER if getattr(_LOCAL, "scheduler", False) else OTHERS

    def begun(_connection: Any) -> None:
        if CALLS.on:
            CALLS.add(f"{side()}: transactions", 0.0)

    def before(conn: Any, *_args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, *_args: Any) -> None:
        started = conn.info["bench_started"].pop()
        if CALLS.on:
            CALLS.add(f"{side()}: statements (driver)", time.perf_counter() - started)

    event.listen(engine, "begin", begun)
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    dialect = engine.dialect
    commit = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        started = time.perf_counter()
        try:
            commit(dbapi_connection)
        finally:
            if CALLS.on:
                CALLS.add(f"{side()}: commits (driver)", time.perf_counter() - started)

    dialect.do_commit = do_commit


DATABASE_ROWS = tuple(
    f"{who}: {what}"
    for who in (SCHEDULER, OTHERS)
    for what in ("transactions", "statements (driver)", "commits (driver)")
)


# --- one process with the scheduler ----------------------------------------------------------------


@dataclass
class Process:
    """The scheduler function running in this process on one bus, with the benchmark's consumers."""

    name: str
    deps: Any
    idle: Callable[[], Awaitable[None]]
    """Waits until every consumer of the bus has nothing left to handle."""
    setup_workers: int
    starts: dict[str, float] = field(default_factory=dict)
    pings: dict[str, float] = field(default_factory=dict)
    wanted: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, n: int) -> None:
        self.starts.clear()
        self.pings.clear()
        self.wanted, self.arrived = n, asyncio.Event()

    async def on_start(self, event: Any) -> list[Any]:
        job_id = str((event.data or {}).get("job_id"))
        if job_id not in self.starts:
            self.starts[job_id] = time.perf_counter()
            if len(self.starts) >= self.wanted:
                self.arrived.set()
        return []

    async def on_ping(self, event: Any) -> list[Any]:
        if event.id not in self.pings:
            self.pings[event.id] = time.perf_counter()
            if len(self.pings) >= self.wanted:
                self.arrived.set()
        return []

    async def wait(self, what: str) -> None:
        try:
            await asyncio.wait_for(self.arrived.wait(), WAIT_S)
        except TimeoutError:
            got = len(self.starts) or len(self.pings)
            raise SystemExit(
                f"jobs benchmark: {self.name}: {got} of {self.wanted} {what} within {WAIT_S:.0f} s"
            ) from None


@contextlib.asynccontextmanager
async def embedded_process(work: Path) -> Any:
    from aima.settings import load_settings
    from events.bus_memory import MemoryBus
    from functions.runtime.deps import Deps

    settings = load_settings(profile="embedded", data_dir=work / "embedded", bus="memory", delivery="bus")
    deps = Deps(settings)
    bus = deps.bus.inner
    assert isinstance(bus, MemoryBus)

    async def idle() -> None:
        await bus.drain(timeout=WAIT_S)

    async with _hosted("in-process bus, SQLite", deps, idle, setup_workers=1) as process:
        yield process


@contextlib.asynccontextmanager
async def cluster_process(work: Path) -> Any:
    import nats
    import nats.js.errors
    import psycopg

    from aima.settings import load_settings
    from aima.storage.cache_redis import RedisCache
    from aima.storage.factory import Stores
    from functions.runtime.deps import Deps

    tag = uuid.uuid4().hex[:10]
    name = f"aima_bench_jobs_{tag}"
    stream = f"BENCH_JOBS_{tag}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].removeprefix("postgresql://")
    cache = stores = None
    try:
        settings = load_settings(
            profile="cluster",
            database_url=f"postgresql+psycopg://{base}/{name}",
            bus="nats",
            nats_url=NATS_URL,
            nats_stream=stream,
            nats_subject_root=f"benchjobs{tag}",
            delivery="bus",
            cache_url=REDIS_URL,
            object_store="local",
            objects_path=work / "cluster-objects",
            vector_uri=str(work / "cluster-vectors.db"),  # never opened: the scheduler needs no vectors
            documents_uri=f"litemongo://{work / 'cluster-documents'}",
            key_encryption_secret=secrets.token_urlsafe(32),
        )
        stores = Stores.open(settings, migrate=True)
        cache = RedisCache(REDIS_URL, prefix=f"aima-bench-jobs-{tag}:")  # apart from anyone's keys
        stores.cache = cache
        deps = Deps(settings, stores=stores)
        nc = await nats.connect(NATS_URL)

        async def idle() -> None:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                busy = False
                for consumer in ("scheduler", "bench-starts", "bench-pings"):
                    info = await nc.jetstream().consumer_info(stream, consumer)
                    busy = busy or bool(info.num_pending or info.num_ack_pending)
                if not busy:
                    return
                await asyncio.sleep(0.05)
            raise SystemExit("jobs benchmark: the NATS consumers did not drain")

        try:
            async with _hosted("NATS JetStream, PostgreSQL", deps, idle, setup_workers=4) as process:
                yield process
        finally:
            for doomed in (stream, f"{stream}_DLQ"):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await nc.jetstream().delete_stream(doomed)
            await nc.close()
    finally:
        if cache is not None:
            with contextlib.suppress(Exception):
                cache.delete_prefix("")
        if stores is not None:
            stores.close()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def _hosted(name: str, deps: Any, idle: Callable[[], Awaitable[None]], *, setup_workers: int) -> Any:
    from events.bus import Subscription
    from events.catalogue import MediaUploaded
    from functions.runtime.host import Host
    from functions.scheduler.spec import SPEC

    host = Host(deps, [SPEC])
    watch_database(deps.db.engine)
    process = Process(name, deps, idle, setup_workers)
    await host.start()
    try:
        policy = deps.retry_policy
        await deps.bus.subscribe(
            Subscription("bench-starts", (MediaUploaded.TYPE,), process.on_start, policy)
        )
        await deps.bus.subscribe(Subscription("bench-pings", (PING_TYPE,), process.on_ping, policy))
        yield process
    finally:
        await host.stop()


# --- the measurements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    tenant_id: str
    created: list[Any]  # the jobs' job.created events, parent then child, job by job


def queue_jobs(deps: Any, n: int, workers: int) -> Queued:
    """A fresh tenant with a case and ``jobs.max_running`` 1000, and ``n`` queued jobs, none announced
    (several threads on PostgreSQL, whose commits wait for the disk)."""
    import hashlib

    from sqlalchemy import insert

    from aima.access.scope import Scope
    from aima.domain import Step
    from aima.storage.jobs import JobOptions, JobRepository, job_created
    from aima.storage.media import MediaRepository
    from aima.storage.schema import cases
    from aima.storage.scoped import scoped_session

    db = deps.db
    tenant_id = f"bench-{uuid.uuid4().hex[:12]}"
    case_id = str(uuid.uuid4())
    with scoped_session(db, Scope.for_tenant(tenant_id, ACTOR)) as session:
        session.execute(insert(cases).values(id=case_id, tenant_id=tenant_id, name="jobs benchmark"))
    current = deps.config.get("jobs", tenant_id)[0]
    deps.config.set(
        "jobs", {**current, "max_running": 1000}, actor=ACTOR, tenant_id=tenant_id, audit_tenant_id=tenant_id
    )
    scope = Scope.for_case(tenant_id, case_id, ACTOR)
    jobs, media = JobRepository(db), MediaRepository(db)
    steps = [step.value for step in Step]

    def one(_: int) -> tuple[Any, Any]:
        parent = jobs.create_parent(scope, case_id, steps, JobOptions(submitted_by=ACTOR), announce=False)
        media_id = str(uuid.uuid4())
        media.add(
            scope,
            case_id=case_id,
            media_id=media_id,
            sha256=hashlib.sha256(media_id.encode()).hexdigest(),
            size=4_000_000,
            content_type="video/mp4",
            kind="video",
            filename=f"{media_id[:8]}.mp4",
            object_key=f"cases/{case_id}/media/{media_id}/original",
        )
        child = jobs.create_child(scope, case_id, parent.id, media_id, announce=False)
        return parent, child

    with ThreadPoolExecutor(workers) as pool:
        made = list(pool.map(one, range(n)))
    made.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
    return Queued(tenant_id, [job_created(job) for pair in made for job in pair])


def pings(n: int) -> list[Any]:
    """``n`` events of a ``media.uploaded``'s size (the same fields, another type)."""
    from events.catalogue import MediaUploaded
    from events.envelope import CloudEvent

    out = []
    for i in range(n):
        data = MediaUploaded(
            tenant_id="bench",
            case_id=str(uuid.uuid4()),
            media_id=str(uuid.uuid4()),
            job_id=str(uuid.uuid4()),
            object_key=f"cases/{uuid.uuid4()}/media/{uuid.uuid4()}/original",
            sha256=secrets.token_hex(32),
            size=4_000_000 + i,
            content_type="video/mp4",
            filename=f"{i:08d}.mp4",
        )
        out.append(CloudEvent(source="/aima/bench/jobs", type=PING_TYPE, data=data.model_dump(mode="json")))
    return out


@dataclass(frozen=True)
class Baseline:
    per_event: float  # published one by one
    latency_p50: float
    latency_p95: float
    batched_per_event: float  # in one publish_many


async def baseline(process: Process, n: int) -> Baseline:
    bus = process.deps.bus
    events = pings(n)
    await process.idle()
    process.expect(n)
    sent: dict[str, float] = {}
    first = time.perf_counter()
    for event in events:
        sent[event.id] = time.perf_counter()
        await bus.publish(event)
    await process.wait("events")
    per_event = (max(process.pings.values()) - first) / n
    latencies = [process.pings[i] - sent[i] for i in sent]
    await process.idle()
    batch = pings(n)
    process.expect(n)
    first = time.perf_counter()
    await bus.publish_many(batch)
    await process.wait("events")
    batched = (max(process.pings.values()) - first) / n
    return Baseline(per_event, percentile(latencies, 0.5), percentile(latencies, 0.95), batched)


@dataclass(frozen=True)
class Scheduled:
    submit: str  # "request" or "created"
    per_job: float
    latency_p50: float
    latency_p95: float
    first: float  # seconds from submit to the first start event
    rest: float  # seconds after the last start until the scheduler had handled every event
    setup: float  # seconds to queue the jobs (not measured)
    seconds: dict[str, float]
    cpu: dict[str, float]
    counts: dict[str, int]


def submit_events(submit: str, queued: Queued) -> list[Any]:
    """What submitting the queued jobs publishes (see module docstring)."""
    from events.catalogue import SchedulingRequested, make_event

    if submit == "created":
        return queued.created
    request = SchedulingRequested(tenant_id=queued.tenant_id, reason="benchmark")
    return [make_event(request, source="/aima/kernel/jobs")]


async def scheduled(process: Process, n: int, submit: str) -> Scheduled:
    started = time.perf_counter()
    queued = await asyncio.to_thread(queue_jobs, process.deps, n, process.setup_workers)
    setup = time.perf_counter() - started
    await process.idle()
    await process.deps.relay.flush()  # the configuration change's notice out of the way
    events = submit_events(submit, queued)
    process.expect(n)
    CALLS.reset()
    CALLS.on = True
    try:
        submitted = time.perf_counter()
        await process.deps.bus.publish_many(events)
        await process.wait("jobs started")
        last = max(process.starts.values())
        await process.idle()
        drained = time.perf_counter()
    finally:
        CALLS.on = False
    seconds, cpu, counts = CALLS.snapshot()
    latencies = [t - submitted for t in process.starts.values()]
    return Scheduled(
        submit=submit,
        per_job=(last - submitted) / n,
        latency_p50=percentile(latencies, 0.5),
        latency_p95=percentile(latencies, 0.95),
        first=min(latencies),
        rest=drained - last,
        setup=setup,
        seconds=seconds,
        cpu=cpu,
        counts=counts,
    )


@dataclass
class Round:
    baseline: Baseline
    scheduler: Scheduled
    order: str


@dataclass
class BusResult:
    name: str
    rounds: list[Round] = field(default_factory=list)
    created: Scheduled | None = None
    created_baseline: Baseline | None = None

    @property
    def ratio(self) -> float:
        return statistics.median(r.scheduler.per_job / r.baseline.per_event for r in self.rounds)


async def measure_bus(opener: Callable[[Path], Any], work: Path, n: int) -> BusResult:
    async with opener(work) as process:
        result = BusResult(process.name)
        await baseline(process, min(n, 100))  # warm both paths: connections, consumers, caches
        await scheduled(process, min(n, 50), "request")
        for r in range(ROUNDS):
            if r % 2 == 0:
                b = await baseline(process, n)
                s = await scheduled(process, n, "request")
                order = "bus first"
            else:
                s = await scheduled(process, n, "request")
                b = await baseline(process, n)
                order = "scheduler first"
            result.rounds.append(Round(b, s, order))
            print(
                f"  {process.name}, round {r + 1} ({order}): bus {ms(b.per_event)} per event, "
                f"scheduler {ms(s.per_job)} per job = {s.per_job / b.per_event:.2f}x",
                flush=True,
            )
        result.created = await scheduled(process, n, "created")
        result.created_baseline = await baseline(process, n)
        c, cb = result.created, result.created_baseline
        print(
            f"  {process.name}, submitted as job.created: scheduler {ms(c.per_job)} per job, "
            f"bus {ms(cb.per_event)} per event = {c.per_job / cb.per_event:.2f}x",
            flush=True,
        )
    return result


# --- reporting -------------------------------------------------------------------------------------


def report_bus(result: BusResult, n: int) -> None:
    print(f"\n== {result.name}: {n} jobs a round, {len(result.rounds)} rounds")
    print(
        "  round            bus per event (p50 / p95 publish -> consume; batched)   "
        "scheduler per job (p50 / p95 submit -> start; first)   ratio"
    )
    for i, r in enumerate(result.rounds, 1):
        b, s = r.baseline, r.scheduler
        print(
            f"  {i} {r.order:15s} {ms(b.per_event):>10} ({b.latency_p50 * 1000:6.2f} / "
            f"{b.latency_p95 * 1000:6.2f} ms; {ms(b.batched_per_event)})   {ms(s.per_job):>10} "
            f"({s.latency_p50:6.3f} / {s.latency_p95:6.3f} s; {s.first:.3f} s)   "
            f"{s.per_job / b.per_event:6.2f}x"
        )
    bus = statistics.median(r.baseline.per_event for r in result.rounds)
    batched = statistics.median(r.baseline.batched_per_event for r in result.rounds)
    sched = statistics.median(r.scheduler.per_job for r in result.rounds)
    print(
        f"  median: bus {ms(bus)} per event, scheduler {ms(sched)} per job; ratio (median of the rounds' "
        f"ratios) {result.ratio:.2f}x, target <= {RATIO_TARGET:g}x; against the bus's batched "
        f"{ms(batched)} per event: {sched / batched:.1f}x (printed only)"
    )
    print(
        f"  queueing {n} jobs before each submit (not measured) took "
        f"{statistics.median(r.scheduler.setup for r in result.rounds):.1f} s"
    )
    runs = [r.scheduler for r in result.rounds]
    report_calls(runs, n, "after one job.scheduling.requested, summed over the rounds")
    c, cb = result.created, result.created_baseline
    if c is not None and cb is not None:
        print(
            f"  submitted as the jobs' {2 * n} job.created events instead (once, not a check): "
            f"{ms(c.per_job)} per job (p50 / p95 submit -> start {c.latency_p50:.3f} / "
            f"{c.latency_p95:.3f} s) against {ms(cb.per_event)} per bus event "
            f"= {c.per_job / cb.per_event:.2f}x; "
            f"after the last start the scheduler took {c.rest:.2f} s more for the rest of the events"
        )
        report_calls([c], n, "after the jobs' job.created")


def report_calls(runs: Sequence[Scheduled], n: int, what: str) -> None:
    """Where the time went, per job, from submit until every consumer was idle."""
    seconds: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for s in runs:
        for label, value in s.seconds.items():
            seconds[label] += value
            cpu[label] += s.cpu.get(label, 0.0)
            counts[label] += s.counts[label]
    jobs = n * len(runs)
    wall = sum(s.per_job * n + s.rest for s in runs)
    print(
        f"  where the time went {what}, per job (submit -> idle {ms(wall / jobs)}; wall time of each call, "
        "so calls on other threads overlap the walk's; CPU: that thread's own, for calls that do not await):"
    )
    print(
        f"    {'call':52s} {'calls/job':>9s} {'wall ms/job':>11s} {'CPU ms/job':>10s} {'wall ms/call':>12s}"
    )
    for label in [label for _, _, label in TIMED] + list(DATABASE_ROWS):
        if label not in counts:
            continue
        if label.endswith("transactions"):
            print(f"    {label:52s} {counts[label] / jobs:9.3f}")
            continue
        used = f"{cpu[label] * 1000 / jobs:10.3f}" if label in cpu and cpu[label] > 0 else f"{'':10s}"
        print(
            f"    {label:52s} {counts[label] / jobs:9.3f} {seconds[label] * 1000 / jobs:11.3f} {used} "
            f"{seconds[label] * 1000 / counts[label]:12.3f}"
        )
    walk, walk_cpu = seconds.get(TIMED[0][2], 0.0), cpu.get(TIMED[0][2], 0.0)
    driver = sum(seconds.get(f"{SCHEDULER}: {x} (driver)", 0.0) for x in ("statements", "commits"))
    if walk:
        print(
            f"    => the walk: {ms(walk / jobs)} a job: {ms(walk_cpu / jobs)} of its thread's CPU, "
            f"{ms(driver / jobs)} inside the database driver (statements and commits, wall)"
        )


# --- the part ----------------------------------------------------------------------------------------


async def scheduling_part(work: Path) -> list[BusResult]:
    restore = instrument()
    try:
        results = [await measure_bus(embedded_process, work, JOBS)]
        results.append(await measure_bus(cluster_process, work, JOBS))
    finally:
        restore()
    return results


def main() -> None:
    print(
        f"{os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"{JOBS} jobs a round, {ROUNDS} rounds"
    )
    checks: list[dict[str, object]] = []
    work = Path(tempfile.mkdtemp(prefix="aima-bench-jobs-"))
    try:
        if "schedule" in PARTS:
            results = asyncio.run(scheduling_part(work))
            print(
                "\nsubmit: one io.aima.job.scheduling.requested.v1 for the tenant, so the scheduler walks "
                f"the queue once and starts all {JOBS} jobs: its own cost, with no event per job on the way "
                "in. "
                "The jobs' own job.created events (as ingest announces a request) follow once per bus: "
                "a walk per parent event, and every event settled in the ledger."
            )
            for result in results:
                report_bus(result, JOBS)
            for result, key in zip(results, ("memory", "nats"), strict=True):
                checks.append(
                    check(f"scheduler_per_job_vs_{key}_bus_per_event", result.ratio, "<=", RATIO_TARGET)
                )
        if "estimate" in PARTS:
            from benchmarks import _jobs_estimate

            checks += _jobs_estimate.run(work / "estimate")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(json.dumps({"benchmark": "jobs", "checks": checks}))


if __name__ == "__main__":
    main()
