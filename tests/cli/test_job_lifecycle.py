"""Cancel and resume of real analyses on the embedded profile, each `aima analyze` in its own process.

- A job cancelled mid-run stops at once: what finished is kept, the steps that had not run are
  ``cancelled``, the report built at once is partial and says so; a resume runs only the rest.
- ``aima analyze`` killed with SIGKILL while it transcribes leaves the job ``Running``; ``aima job
  resume`` skips the finished steps (the probe runs once) and the report equals an uninterrupted
  run's, ids, times and signatures aside.
"""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aima.access.scope import Scope
from aima.reports.model import CaseReport
from aima.samples import CONVERSATION, write_notice_png, write_script_wav
from aima.samples_faces import write_face_samples
from aima.storage.jobs import JobRepository
from aima.storage.relational import Database
from tests.support import comparable, run_aima

pytestmark = pytest.mark.timeout(900)


def start_analyze(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | {"PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "aima.cli", "analyze", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(cwd: Path, sql: str) -> list[tuple[Any, ...]]:
    path = cwd / ".aima" / "aima.db"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def wait_for(
    what: str, check: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"aima analyze ended before {what}: {err[-3000:]}\n{out[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.1)


def steps(cwd: Path) -> dict[tuple[str, str], tuple[str, int]]:
    """(child job, step) -> (state, attempts)."""
    return {
        (j, s): (state, n)
        for j, s, state, n in rows(cwd, "SELECT job_id, step, state, attempts FROM job_steps")
    }


def parent(cwd: Path) -> tuple[str, str, str, str]:
    """The job: id, tenant, case, phase."""
    [row] = rows(cwd, "SELECT id, tenant_id, case_id, state FROM jobs WHERE parent_job_id IS NULL")
    return row


def report_of(folder: Path) -> CaseReport:
    return CaseReport.model_validate_json((folder / "report.json").read_bytes())


def same(left: CaseReport, right: CaseReport) -> None:
    a, b = (json.dumps(comparable(r), indent=1, sort_keys=True).splitlines() for r in (left, right))
    assert a == b, "\n".join(difflib.unified_diff(a, b, "uninterrupted", "resumed", n=2, lineterm=""))


def test_a_job_cancelled_mid_run_keeps_what_finished_reports_partial_and_resumes(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    conversation = media / "conversation.wav"
    write_script_wav(conversation, CONVERSATION)
    notice = write_notice_png(media / "notice.png")
    [people] = [p for p in write_face_samples(media) if p.name == "people.jpg"]
    work = tmp_path / "work"
    work.mkdir()
    process = start_analyze(work, str(conversation), str(notice), str(people), "--out", "first")

    def something_done() -> bool:
        return any(s != "probe" and state == "succeeded" for (_, s), (state, _) in steps(work).items())

    wait_for("a finished step after the probe", something_done, process)
    job_id, tenant_id, case_id, _ = parent(work)
    db = Database(f"sqlite:///{work / '.aima' / 'aima.db'}")
    cancelled = JobRepository(db).cancel(Scope.for_case(tenant_id, case_id, "test"), job_id, by="test")
    assert cancelled.phase == "Cancelled"
    before = steps(work)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]

    after = steps(work)
    finished = {key for key, (state, _) in before.items() if state in ("succeeded", "not_run")}
    assert finished, before
    assert all(after[key][0] == before[key][0] for key in finished)  # nothing finished was undone
    assert any(state == "cancelled" for state, _ in after.values()), after
    assert parent(work)[3] == "Cancelled"
    first = report_of(work / "first")
    assert first.partial
    statuses = {step.status for file in first.files for step in file.steps}
    assert {"succeeded", "cancelled"} <= statuses
    assert any("cancelled" in (gap.text or "") for gap in first.gaps)
    assert "partial" in out

    resumed = run_aima("job", "resume", job_id, "--out", "second", cwd=work, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert parent(work)[3] == "Succeeded"
    final = steps(work)
    unfinished = {key: value for key, value in final.items() if value[0] not in ("succeeded", "not_run")}
    assert not unfinished, (unfinished, resumed.stdout[-2000:])
    assert all(final[key][1] == before[key][1] for key in finished)  # finished steps did not run again
    second = report_of(work / "second")
    assert not second.partial
    assert second.version == first.version + 1
    assert {step.status for file in second.files for step in file.steps} <= {"succeeded", "not_run"}


def test_sigkill_during_transcription_then_resume_gives_the_uninterrupted_report(tmp_path: Path) -> None:
    conversation = tmp_path / "conversation.wav"
    write_script_wav(conversation, CONVERSATION)
    plain_dir, killed_dir = tmp_path / "plain", tmp_path / "killed"
    plain_dir.mkdir()
    killed_dir.mkdir()
    plain = run_aima(
        "analyze", str(conversation), "--case", "Resume", "--out", "out", cwd=plain_dir, timeout=600
    )
    assert plain.returncode == 0, plain.stderr[-3000:]

    process = start_analyze(killed_dir, str(conversation), "--case", "Resume", "--out", "out")

    def transcribing() -> bool:
        return any(s == "transcribe" and st == "running" for (_, s), (st, _) in steps(killed_dir).items())

    wait_for("the transcription to start", transcribing, process)
    time.sleep(1.0)  # well inside the transcription (it takes several seconds)
    process.kill()  # SIGKILL: no cleanup of any kind
    process.communicate(timeout=30)
    job_id = parent(killed_dir)[0]
    assert parent(killed_dir)[3] == "Running"
    killed = steps(killed_dir)
    assert any(s == "transcribe" and st == "running" for (_, s), (st, _) in killed.items()), killed
    assert not (killed_dir / "out").exists()

    resumed = run_aima("job", "resume", job_id, "--out", "out", cwd=killed_dir, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert parent(killed_dir)[3] == "Succeeded"
    done = steps(killed_dir)
    by_step = {s: (st, n) for (_, s), (st, n) in done.items()}
    assert by_step["probe"] == ("succeeded", 1)  # finished before the kill: not run again
    assert by_step["transcribe"] == ("succeeded", 2)  # the attempt killed, and the one that finished
    same(report_of(plain_dir / "out"), report_of(killed_dir / "out"))
