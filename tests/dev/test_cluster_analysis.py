"""The same media through the embedded profile and through `aima dev up` give equal reports.

Embedded: every step in the ``aima analyze`` process, SQLite, a local folder, litemongo, Milvus Lite,
the in-process bus. Cluster: ``aima analyze --profile cluster`` stores the files in PostgreSQL and
S3 and announces them on NATS JetStream; fourteen function processes analyse them and fuse stores
the report. The two reports must say the same, ids and times aside.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from aima.reports.model import CaseReport
from aima.samples import CONVERSATION, write_notice_png, write_script_wav
from aima.samples_faces import write_face_samples
from tests.dev.test_dev_stack import started
from tests.support import run_aima

pytestmark = pytest.mark.services

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?")
VOLATILE = {
    "report_id",
    "created_at",
    "job_id",
    "uploaded_at",
    "signed_at",
    "signature",
    "key_id",
    "audit_head",
    "indicator_key",  # a digest over the media id, among others
}


def comparable(report: CaseReport) -> Any:
    """The report without what differs between any two runs: ids, times, the signature."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return TIME.sub("<time>", UUID.sub("<id>", value))
        return value

    return clean(json.loads(report.model_dump_json()))


def media(folder: Path) -> list[Path]:
    folder.mkdir()
    conversation = folder / "conversation.wav"
    write_script_wav(conversation, CONVERSATION)
    notice = write_notice_png(folder / "notice.png")
    [people] = [p for p in write_face_samples(folder) if p.name == "people.jpg"]
    return [conversation, notice, people]


def test_embedded_and_dev_up_give_equal_reports(tmp_path: Path) -> None:
    files = [str(p) for p in media(tmp_path / "media")]
    embedded = run_aima("analyze", *files, "--case", "Equal", "--out", "embedded", cwd=tmp_path, timeout=300)
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    first = CaseReport.model_validate_json((tmp_path / "embedded" / "report.json").read_bytes())

    with started(tmp_path / ".aima-dev") as (stack, env):
        cluster = run_aima(
            "analyze",
            "--profile",
            "cluster",
            *files,
            "--case",
            "Equal",
            "--out",
            "cluster",
            cwd=tmp_path,
            env=stack.client_env({k: v for k, v in env.items() if k.startswith("AIMA_")}),
            timeout=400,
        )
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    assert "cluster profile: the running functions" in cluster.stdout
    second = CaseReport.model_validate_json((tmp_path / "cluster" / "report.json").read_bytes())

    assert len(first.files) == 3
    assert first.speakers
    assert any(e.kind == "text" for e in first.timeline)
    left, right = (json.dumps(comparable(r), indent=1, sort_keys=True).splitlines() for r in (first, second))
    assert left == right, "\n".join(
        difflib.unified_diff(left, right, "embedded", "cluster", n=2, lineterm="")
    )
