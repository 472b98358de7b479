"""A job cancelled before it ever started (here: while it awaited approval), then resumed and approved,
runs to its end like any other, on the real gateway with every function (found through the review
workspace: such a job stayed ``Running`` for good, holding the tenant's running slot, because fuse
kept the cancelled outcomes and the report claim of its first end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.samples import write_pattern_png
from tests.web.support import Server

pytestmark = pytest.mark.timeout(300)


def test_cancelled_while_awaiting_approval_then_resumed_and_approved_it_finishes(
    server: Server, tmp_path: Path
) -> None:
    case_id = server.create_case("resume after cancel")
    media_id = server.upload(case_id, write_pattern_png(tmp_path / "p.png", width=64, height=48))
    submitted = server.api(
        "POST", f"/cases/{case_id}/jobs", json={"media_ids": [media_id], "require_approval": True}
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    server.wait_for_job(case_id, job_id, ("AwaitingApproval",), timeout=30)
    assert server.api("POST", f"/cases/{case_id}/jobs/{job_id}/cancel").status_code == 200
    server.wait_for_job(case_id, job_id, ("Cancelled",), timeout=30)
    assert server.api("POST", f"/cases/{case_id}/jobs/{job_id}/resume").status_code == 200
    server.wait_for_job(case_id, job_id, ("AwaitingApproval",), timeout=30)
    assert server.api("POST", f"/cases/{case_id}/jobs/{job_id}/approve").status_code == 200
    phase = server.wait_for_job(case_id, job_id, ("Succeeded", "PartiallySucceeded", "Failed"), timeout=120)
    assert phase in {"Succeeded", "PartiallySucceeded"}
    reports = server.api("GET", f"/cases/{case_id}/reports").json()
    assert reports, "no report after the resumed job"
