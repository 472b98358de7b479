"""``aima job`` through the real entry point on the embedded profile, on jobs made with the kernel's
repository (no scheduler runs): list, show (summary and JSON), cancel and approve with their refusals,
estimates of files on disk and of stored media, the audit records, and one-line errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aima.access.scope import Scope
from aima.domain import Job, JobPhase, StepState
from aima.identity.users import UserDirectory
from aima.samples import write_pattern_png, write_tone_wav
from aima.settings import load_settings
from aima.storage.audit import AuditLog
from aima.storage.factory import Stores
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import JobOptions, JobRepository
from aima.storage.media import MediaRepository
from tests.support import add_media, run_aima


@dataclass
class Case:
    env: dict[str, str]
    data_dir: Path
    case_id: str

    def aima(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_aima(*args, env=self.env, timeout=120)

    @contextmanager
    def stores(self) -> Iterator[tuple[Stores, str, Scope]]:
        """The embedded stores the CLI uses, the bootstrap tenant and the case's scope."""
        settings = load_settings(profile="embedded", data_dir=self.data_dir)
        stores = Stores.open(settings)
        try:
            tenant_id = str(UserDirectory(stores.db).tenant_id(settings.bootstrap_tenant))
            yield stores, tenant_id, Scope.for_case(tenant_id, self.case_id, "test")
        finally:
            stores.close()

    def file(self) -> str:
        """A stored, probed image of the case."""
        with self.stores() as (stores, _tenant, scope):
            media = MediaRepository(stores.db)
            png = write_pattern_png(self.data_dir.parent / "still.png", width=16, height=12).read_bytes()
            media_id, _ = add_media(
                stores.objects,  # type: ignore[arg-type]
                media,
                scope,
                self.case_id,
                png,
                content_type="image/png",
                filename="still.png",
            )
            media.set_probed(scope, media_id, kind="image", metadata={})
            return media_id

    def job(self, media_id: str, phase: JobPhase = JobPhase.QUEUED, **options: Any) -> Job:
        """A job on ``media_id`` moved to ``phase``; a running one has its probe done and faces pending."""
        moves = {
            JobPhase.QUEUED: [],
            JobPhase.RUNNING: [JobPhase.ESTIMATING, JobPhase.RUNNING],
            JobPhase.AWAITING_APPROVAL: [JobPhase.ESTIMATING, JobPhase.AWAITING_APPROVAL],
        }[phase]
        with self.stores() as (stores, _tenant, scope):
            jobs = JobRepository(stores.db)
            job = jobs.create_parent(scope, self.case_id, ["probe", "faces"], JobOptions(**options))
            child = jobs.create_child(scope, self.case_id, job.id, media_id)
            for move in moves:
                job = jobs.move(scope, job.id, move)
            if phase is JobPhase.RUNNING:
                steps = JobSteps(stores.db)
                steps.plan(scope, child, {"probe": 1.0, "faces": 1.0})
                steps.begin(scope, child, "probe", worker="test", lease_s=60)
                steps.finish(scope, child.id, "probe", StepState.SUCCEEDED)
            return job

    def phase(self, job_id: str) -> JobPhase:
        with self.stores() as (stores, _tenant, scope):
            job = JobRepository(stores.db).get(scope, job_id)
        assert job is not None
        return job.phase

    def records(self) -> list[dict[str, Any]]:
        """The case's audit records, oldest first."""
        with self.stores() as (stores, tenant_id, _scope):
            return list(reversed(AuditLog(stores.db).query(tenant_id, case_id=self.case_id, limit=1000)))


@pytest.fixture
def case(tmp_path: Path) -> Case:
    data_dir = tmp_path / "aima"
    env = {"AIMA_DATA_DIR": str(data_dir)}
    created = run_aima("case", "create", "Harbour fire", env=env, timeout=120)
    assert created.returncode == 0, created.stderr
    return Case(env, data_dir, created.stdout.strip())


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"aima: {message}\n")


def test_list_show_and_cancel_with_their_audit(case: Case) -> None:
    empty = case.aima("job", "list")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "no jobs yet\n")

    media_id = case.file()
    older = case.job(media_id, reference="ticket-9")
    running = case.job(media_id, JobPhase.RUNNING)
    lines = ok(case.aima("job", "list", "--case", case.case_id)).splitlines()
    assert [line.split("\t") for line in lines] == [
        [running.id, case.case_id, "Running", "normal", "50%", "1", running.created_at.isoformat(), "-"],
        [older.id, case.case_id, "Queued", "normal", "0%", "1", older.created_at.isoformat(), "ticket-9"],
    ]
    assert ok(case.aima("job", "list")).splitlines() == lines  # every case of the tenant
    one_line_error(case.aima("job", "list", "--case", "no-such-case"), "no case no-such-case")

    summary = ok(case.aima("job", "show", running.id))
    assert (
        summary.splitlines()[0]
        == f"job {running.id} of case {case.case_id}: Running, priority normal, 1 file(s)"
    )
    assert "  progress: 50 % of the planned steps ended; left: unknown" in summary.splitlines()
    assert "  faces: 1 pending" in summary.splitlines()
    assert "  probe: 1 succeeded" in summary.splitlines()
    view = json.loads(ok(case.aima("job", "show", older.id, "--json")))
    assert (view["id"], view["phase"], view["reference"], view["files"]) == (
        older.id,
        "Queued",
        "ticket-9",
        1,
    )
    one_line_error(case.aima("job", "show", "nothing"), "no job nothing")

    assert ok(case.aima("job", "cancel", running.id)) == f"job {running.id}: Cancelled\n"
    assert case.phase(running.id) is JobPhase.CANCELLED
    one_line_error(
        case.aima("job", "cancel", running.id),
        f"job {running.id} is Cancelled; a finished job cannot be cancelled",
    )

    trail = [
        (r["action"], r["outcome"], r["object"])
        for r in case.records()
        if r["action"] in ("case.read", "analysis.run")
    ]
    jobs = f"case/{case.case_id}/jobs"
    of_running, of_older = f"case/{case.case_id}/job/{running.id}", f"case/{case.case_id}/job/{older.id}"
    assert trail == [
        ("case.read", "allowed", jobs),  # list --case
        ("case.read", "allowed", jobs),  # list: the cases that have jobs
        ("case.read", "allowed", of_running),
        ("case.read", "allowed", of_older),
        ("analysis.run", "allowed", of_running),
        ("analysis.run", "failed", of_running),
    ]
    assert all(r["detail"]["via"] == "cli" for r in case.records()[-6:])


def test_approve_only_what_awaits_approval(case: Case) -> None:
    media_id = case.file()
    queued = case.job(media_id)
    one_line_error(
        case.aima("job", "approve", queued.id),
        f"job {queued.id} is Queued; only a job awaiting approval can be approved",
    )
    waiting = case.job(media_id, JobPhase.AWAITING_APPROVAL, require_approval=True)
    out = ok(case.aima("job", "approve", waiting.id))
    assert out.startswith(f"job {waiting.id}: approved by ")
    assert out.endswith("; Queued\n")
    assert case.phase(waiting.id) is JobPhase.QUEUED


def test_estimate_files_on_disk_and_stored_media(case: Case, tmp_path: Path) -> None:
    png = write_pattern_png(tmp_path / "scene.png", width=32, height=24)
    wav = write_tone_wav(tmp_path / "call.wav", seconds=2.0)
    lines = ok(
        case.aima("job", "estimate", str(png), str(wav), "--steps", "probe,transcribe,faces")
    ).splitlines()
    guessed = wav.stat().st_size / 88_200  # a WAV's typical bytes per second: no probe ran
    assert lines[0].startswith(
        f"2 file(s), {guessed:.1f} s of audio and video (durations guessed from sizes), under cpu: "
    )
    assert sorted(line.split("\t")[0].strip() for line in lines[1:]) == ["faces", "probe", "transcribe"]

    media_id = case.file()
    estimated = json.loads(ok(case.aima("job", "estimate", media_id, "--gpu-profile", "l4", "--json")))
    assert (estimated["gpu_profile"], estimated["files"], estimated["basis"]) == ("l4", 1, "probed")
    assert "faces" in estimated["per_step"]
    assert case.records()[-1]["object"] == f"case/{case.case_id}/jobs"

    one_line_error(case.aima("job", "estimate", "missing.mp4"), "no file or stored media missing.mp4")
    text = tmp_path / "notes.txt"
    text.write_text("not a media file")
    failed = case.aima("job", "estimate", str(text))
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"aima: {text}: ")
    one_line_error(
        case.aima("job", "estimate", str(png), "--gpu-profile", "tpu"),
        "no GPU profile 'tpu'; the configured ones are a100, cpu, h100, l4",
    )
    refused = case.aima("job", "estimate", str(png), "--steps", "probe,levitate")
    assert (refused.returncode, refused.stderr.startswith("aima: --steps takes steps out of probe, ")) == (
        1,
        True,
    )
