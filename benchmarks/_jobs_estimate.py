"""Estimate error: what the scheduler estimated for the main job against what the job used.

Part of ``benchmarks/jobs.py``; alone: ``python benchmarks/_jobs_estimate.py``. The main job runs
twice, each time in a process of its own as ``aima analyze`` runs it (`aima.cli.analyze.run_analysis`:
the embedded profile, every step in that process, models loaded on first use, the report in every
format), both in one temporary data folder, each time on three files of the same kinds:

* a generated 1280x720 video with speech and faces, ``VIDEO_SECONDS`` long (the pipeline
  benchmark's media, `benchmarks/pipeline.py`, cached in ``~/.cache/aima/bench``);
* a printed notice as PNG (`aima.samples.write_notice_png`), other lines the second time;
* a spoken exchange as WAV (`aima.samples.write_script_wav`), other sentences the second time.

The scheduler estimates a job when it admits it, before the probe ran, so each file's duration is
guessed from its size and type (the estimate's ``basis``: ``size``), and calibrates each step's
rate from the estimates and actuals of finished jobs under the same GPU profile: the first job is
estimated uncalibrated, the second calibrated by the first. A job's actual is what its steps'
ledger measured (`functions.fuse.finish`: seconds from each step's start to its end, per file).

Printed per job: ``estimate.model_s``, ``actual.model_s``, the table per step (units, model
seconds, actual ÷ estimate, the calibration factor applied) and |estimate - actual| ÷ actual;
alongside, the model seconds estimated from the durations the probe measured, uncalibrated, which
shows how much of the error is the guess of the duration and how much the rates; and each job's
wall and CPU time and the load average, since the machine's speed moves the actuals. The check is
the second (calibrated) job's error against ``TARGET``, a target of this benchmark's own: the issue
asks only that the error be reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIDEO_SECONDS = tuple(int(x) for x in os.environ.get("AIMA_BENCH_JOBS_VIDEO_SECONDS", "40,50").split(","))
TARGET = 0.5
TRANSCRIBER_THREADS = 2
NOTICES = (
    ("STORAGE HALL 3", "NO ENTRY AFTER 22:00", "LAGERHALLE 3 - KEIN ZUTRITT"),
    ("LOADING BAY 2", "DELIVERIES 06:00 - 14:00", "LADERAMPE 2 - NUR LIEFERUNGEN"),
)


def media(work: Path, n: int) -> list[Path]:
    """The ``n``-th set of files (0 or 1): a video, a notice, a spoken exchange."""
    from aima.samples import Pause, write_notice_png, write_script_wav
    from benchmarks import pipeline

    folder = work / f"media-{n + 1}"
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"interview-{n + 1}.mp4"
    shutil.copyfile(pipeline.media(VIDEO_SECONDS[n % len(VIDEO_SECONDS)]), video)
    notice = write_notice_png(folder / f"notice-{n + 1}.png", NOTICES[n % len(NOTICES)])
    lines = pipeline.INTERVIEW[6 * n : 6 * n + 6]
    script: list[Any] = [Pause(0.5)]
    for i, line in enumerate(lines):
        script += [line, Pause(pipeline.PAUSES[i % len(pipeline.PAUSES)])]
    speech = folder / f"statement-{n + 1}.wav"
    write_script_wav(speech, script)
    return [video, notice, speech]


@dataclass(frozen=True)
class Job:
    """One analysed job as the database has it once it ended."""

    job_id: str
    phase: str
    wall: float  # run_analysis, call to return
    cpu: float  # the job's process, user and system, imports included
    load: tuple[float, float]  # load average (1 min) before and after
    files: list[tuple[str, int]]  # name, bytes
    estimate: Any  # aima.estimates.Estimate
    actual: Any
    probed: Any  # the estimate recomputed from the probe's durations, same rates and calibration
    calibration: dict[str, float]


def analyse(data: Path, files: list[Path], out: Path, calibration: dict[str, float]) -> Job:
    """One main job in a process of its own, as ``aima analyze`` runs (imports and model loading
    included, as every run of the command pays them), then read back from the data folder."""
    from aima.access.scope import Scope
    from aima.config.schema import RuntimeConfig
    from aima.estimates import Estimate, estimate, facts_of
    from aima.settings import load_settings
    from aima.storage.job_queue import JobQueue
    from aima.storage.jobs import JobRepository
    from aima.storage.media import MediaRepository
    from aima.storage.relational import Database

    argv = [sys.executable, str(Path(__file__).resolve()), "--job", str(data), str(out), *map(str, files)]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stdout.strip().splitlines()
    try:
        ran = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise SystemExit(
            f"jobs benchmark: the analysis failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        ) from None
    settings = load_settings(profile="embedded", data_dir=data)
    db = Database(str(settings.database_url))
    try:
        job = JobQueue(db).find(ran["job"])
        if job is None or job.estimate is None or job.actual is None:
            raise SystemExit(
                f"jobs benchmark: job {ran['job']} has no estimate or no actual "
                f"({job.phase if job else 'not found'})\n" + "\n".join(lines)
            )
        scope = Scope.for_case(job.tenant_id, job.case_id, "benchmark")
        rows = MediaRepository(db)
        facts = [
            facts_of(row)
            for child in JobRepository(db).children(scope, job.id)
            if child.media_id and (row := rows.get(scope, child.media_id)) is not None
        ]
        planned = Estimate.model_validate(job.estimate)
        config = RuntimeConfig()  # the benchmark's tenant keeps the defaults
        probed = estimate(
            facts,
            job.steps,
            planned.gpu_profile,
            config.gpu.profiles[planned.gpu_profile],
            frames_per_minute=config.analysis.max_frames_per_minute,
            parallel_files=config.jobs.parallel_files,
        )
        return Job(
            job_id=job.id,
            phase=job.phase.value,
            wall=float(ran["wall"]),
            cpu=cpu,
            load=(load, os.getloadavg()[0]),
            files=[(f.name, f.stat().st_size) for f in files],
            estimate=planned,
            actual=Estimate.model_validate(job.actual),
            probed=probed,
            # the factors the scheduler applied when the estimate says them, else those it would have
            calibration=dict(getattr(planned, "factors", None) or calibration),
        )
    finally:
        db.dispose()


def one_job(data: Path, out: Path, files: list[Path]) -> None:
    """The child process of `analyse`: run the job, print its id and wall time as one JSON line."""
    from aima.cli.analyze import run_analysis
    from aima.settings import load_settings

    os.environ.setdefault("AIMA_MODELS__TRANSCRIBER__THREADS", str(TRANSCRIBER_THREADS))
    settings = load_settings(profile="embedded", data_dir=data)
    echoed: list[str] = []
    started = time.perf_counter()
    asyncio.run(run_analysis(settings, files, case_name="jobs benchmark", echo=echoed.append, out=out))
    wall = time.perf_counter() - started
    found = next((m for line in echoed if (m := re.match(r"job (\S+): ", line))), None)
    print("\n".join(echoed))
    if found is None:
        raise SystemExit("the analysis named no job")
    print(json.dumps({"job": found.group(1), "wall": wall}))


def show(n: int, job: Job) -> None:
    from aima.estimates import error

    est, act, probed = job.estimate, job.actual, job.probed
    kind = "uncalibrated" if not job.calibration else "calibrated by job 1"
    print(
        f"\njob {n} ({kind}), {job.job_id}: {job.phase}, run_analysis {job.wall:.1f} s, the process's CPU "
        f"{job.cpu:.1f} s, load average {job.load[0]:.1f} before, {job.load[1]:.1f} after; files: "
        + ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in job.files)
    )
    print(
        f"  estimated on the files' sizes (basis {est.basis}): {est.media_s:.1f} s of media; the probe "
        f"measured {probed.media_s:.1f} s. Units: the job's planned units (job_steps keeps them); probed: "
        "the model seconds estimated from the probe's durations, uncalibrated; calib.: the factor applied"
    )
    print(
        f"  {'step':12s} {'units est.':>10s} {'actual':>8s} {'model s est.':>12s} {'actual':>8s} "
        f"{'act./est.':>9s} {'probed':>8s} {'calib.':>7s}"
    )
    steps = sorted(
        set(est.per_step) | set(act.per_step),
        key=lambda s: -(act.per_step[s].model_s if s in act.per_step else 0),
    )
    for step in steps:
        e, a, p = est.per_step.get(step), act.per_step.get(step), probed.per_step.get(step)
        ratio = f"{a.model_s / e.model_s:9.2f}" if e and a and e.model_s > 0 else f"{'-':>9s}"
        print(
            f"  {step:12s} {e.units if e else 0:10.1f} {a.units if a else 0:8.1f} "
            f"{e.model_s if e else 0:12.1f} "
            f"{a.model_s if a else 0:8.1f} {ratio} {p.model_s if p else 0:8.1f} "
            f"{job.calibration.get(step, 1.0):7.2f}"
        )
    print(
        f"  {'total':12s} {'':10s} {'':8s} {est.model_s:12.1f} {act.model_s:8.1f} "
        f"{act.model_s / est.model_s if est.model_s else 0:9.2f} {probed.model_s:8.1f}"
    )
    print(
        f"  estimate.model_s {est.model_s:.1f} s, actual.model_s {act.model_s:.1f} s: "
        f"|estimate - actual| / actual = {error(est, act):.3f} (uncalibrated from the probe's durations: "
        f"{error(probed, act):.3f})"
    )
    missing = [
        f"{step} ({cost.model_s:.1f} s)" for step, cost in est.per_step.items() if step not in act.per_step
    ]
    if missing:
        print(f"  estimated, but never measured by the job's step ledger: {', '.join(missing)}")
    print(f"  wall time: estimated {est.wall_s:.1f} s, the job's own {act.wall_s:.1f} s")


def run(work: Path) -> list[dict[str, object]]:
    """Both jobs, printed; returns the checks."""
    from aima.estimates import calibration, error

    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    print(
        f"\n== estimate error: the main job twice in one data folder (embedded profile), "
        f"videos of {' and '.join(f'{s} s' for s in VIDEO_SECONDS)}"
    )
    first = analyse(data, media(work, 0), work / "report-1", {})
    factors = calibration([(first.estimate, first.actual)])
    second = analyse(data, media(work, 1), work / "report-2", factors)
    for n, job in enumerate((first, second), 1):
        show(n, job)
    uncalibrated, calibrated = error(first.estimate, first.actual), error(second.estimate, second.actual)
    assert uncalibrated is not None
    assert calibrated is not None
    print(
        f"\n  |estimate - actual| / actual of the model time: {uncalibrated:.3f} uncalibrated (job 1), "
        f"{calibrated:.3f} calibrated (job 2); the target <= {TARGET:g} for job 2 is this benchmark's, "
        "not the issue's, which asks for the error to be reported"
    )
    ok = calibrated <= TARGET
    return [
        {
            "name": "estimate_error_calibrated",
            "value": round(calibrated, 4),
            "op": "<=",
            "target": TARGET,
            "ok": ok,
        }
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--job"]:
        one_job(Path(sys.argv[2]), Path(sys.argv[3]), [Path(f) for f in sys.argv[4:]])
        sys.exit(0)
    folder = Path(tempfile.mkdtemp(prefix="aima-bench-jobs-estimate-"))
    try:
        found = run(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"benchmark": "jobs", "checks": found}))
