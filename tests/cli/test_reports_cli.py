"""``aima report`` through the real entry point on the embedded profile (reports stored by hand as fuse
stores them, or built in-process by ``aima report build`` from a case without analysis): list, show,
export in one format and in all of them, build, the audit records, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.reports.model import CaseReport
from aima.settings import load_settings
from aima.storage.audit import AuditLog
from aima.storage.factory import Stores
from aima.storage.media import MediaRepository
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.transcripts import SpeechSegment, Transcript, segment_id
from tests.api.report_seed import store_report
from tests.cli.test_admin_cli import aima
from tests.support import add_media


@dataclass
class Case:
    env: dict[str, str]
    data_dir: Path
    case_id: str

    def stores(self) -> tuple[Stores, str]:
        settings = load_settings(profile="embedded", data_dir=self.data_dir)
        stores = Stores.open(settings)
        return stores, str(UserDirectory(stores.db).tenant_id(settings.bootstrap_tenant))

    def store_report(self) -> CaseReport:
        stores, tenant_id = self.stores()
        try:
            return store_report(stores.documents, tenant_id, self.case_id)
        finally:
            stores.close()

    def add_file(self) -> str:
        """A media file with a transcript whose speaker has a name, as ingest and transcribe store them."""
        stores, tenant_id = self.stores()
        try:
            scope = Scope.for_case(tenant_id, self.case_id, "test")
            media = MediaRepository(stores.db)
            media_id, _ = add_media(
                stores.objects,  # type: ignore[arg-type]
                media,
                scope,
                self.case_id,
                b"ID3",
                content_type="audio/mpeg",
                filename="voicemail.mp3",
            )
            CaseSpeakerRepository(stores.documents).create(tenant_id, self.case_id, "cs-1", name="Anna Meier")
            said = SpeechSegment(
                id=segment_id(media_id, 0.5),
                start=0.5,
                end=2.0,
                text="Call me back.",
                language="en",
                speaker="S1",
                case_speaker_id="cs-1",
            )
            TranscriptRepository(stores.documents).add(
                Transcript(
                    tenant_id=tenant_id, case_id=self.case_id, media_id=media_id, version=1, segments=[said]
                )
            )
            return media_id
        finally:
            stores.close()

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        """The case's audit records after ``since``, oldest first."""
        stores, tenant_id = self.stores()
        try:
            found = AuditLog(stores.db).query(tenant_id, case_id=self.case_id, limit=1000)
        finally:
            stores.close()
        return [r for r in reversed(found) if r["seq"] > since]


@pytest.fixture
def case(tmp_path: Path) -> Case:
    data_dir = tmp_path / "aima"
    env = {"AIMA_DATA_DIR": str(data_dir)}
    created = aima(env, "case", "create", "Harbour fire")
    assert created.returncode == 0, created.stderr
    return Case(env, data_dir, created.stdout.strip())


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"aima: {message}\n")


def test_list_show_and_export_a_stored_report_with_their_audit(case: Case, tmp_path: Path) -> None:
    report = case.store_report()
    start = max((r["seq"] for r in case.records()), default=0)

    [line] = ok(aima(case.env, "report", "list", case.case_id)).splitlines()
    assert line.split("\t") == [
        "v1",
        report.created_at.isoformat(),
        report.report_id,
        "job-1",
        "1",
        "1",
        "1",
        "1",
        "partial",
    ]

    summary = ok(aima(case.env, "report", "show", case.case_id)).splitlines()
    assert summary[0] == f"report v1 of case {case.case_id} ('Harbour fire'), {report.report_id}"
    assert "1 indicator(s) for review (1 posture), 1 gap(s)" in summary[2]
    assert "  reviews: 1 unreviewed" in summary
    assert "  signature: does not hold: the report is not signed" in summary  # made by hand
    assert summary[-1] == "  - One person is seen with hands behind the back. [P1, I1]"

    shown = ok(aima(case.env, "report", "show", case.case_id, "--version", "1", "--json"))
    assert CaseReport.model_validate_json(shown) == report

    table = ok(aima(case.env, "report", "export", case.case_id, "--format", "csv-indicators"))
    [row] = list(csv.DictReader(io.StringIO(table)))
    assert "hands behind the back" in row.values()
    folder = tmp_path / "exports"
    folder.mkdir()
    written = ok(aima(case.env, "report", "export", case.case_id, "--format", "html", "-o", str(folder)))
    page = folder / "Harbour_fire-report-v1.html"
    assert written == f"{page}\n"
    assert "Harbour fire" in page.read_text()

    records = case.records(start)
    assert [(r["action"], r["object"], r["outcome"]) for r in records] == [
        ("case.read", f"case/{case.case_id}/reports", "allowed"),
        ("case.read", f"case/{case.case_id}/report/v1", "allowed"),
        ("case.read", f"case/{case.case_id}/report/v1", "allowed"),
        ("case.export", f"case/{case.case_id}/report/v1", "allowed"),
        ("case.export", f"case/{case.case_id}/report/v1", "allowed"),
    ]
    assert {r["detail"]["via"] for r in records} == {"cli"}
    assert [r["detail"].get("format") for r in records[3:]] == ["csv-indicators", "html"]


def test_build_a_signed_version_and_export_all_of_it(case: Case, tmp_path: Path) -> None:
    case.store_report()
    media_id = case.add_file()
    start = max((r["seq"] for r in case.records()), default=0)

    built = ok(aima(case.env, "report", "build", case.case_id)).splitlines()
    assert built[0].startswith(f"report v2 of case {case.case_id} ('Harbour fire')")
    assert any(line.startswith("  signature: valid (key ") for line in built)
    versions = [
        line.split("\t")[0] for line in ok(aima(case.env, "report", "list", case.case_id)).splitlines()
    ]
    assert versions == ["v1", "v2"]

    out = tmp_path / "all"
    listed = ok(aima(case.env, "report", "export", case.case_id, "--all", "-o", str(out))).splitlines()
    names = sorted(str(Path(p).relative_to(out)) for p in listed)
    assert names == [
        "indicators.csv",
        "persons.csv",
        "report.html",
        "report.json",
        "report.pdf",
        "report.schema.json",
        "timeline.csv",
        "transcripts/F1-voicemail.vtt",
    ]
    exported = CaseReport.model_validate_json((out / "report.json").read_text())
    assert (exported.version, [f.media_id for f in exported.files]) == (2, [media_id])
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    vtt = (out / "transcripts" / "F1-voicemail.vtt").read_text()
    assert "<v Anna Meier>" in vtt
    assert "Call me back." in vtt

    records = case.records(start)
    assert [(r["action"], r["object"], r["outcome"]) for r in records] == [
        ("case.update", f"case/{case.case_id}/reports", "allowed"),
        ("case.read", f"case/{case.case_id}/reports", "allowed"),
        ("case.export", f"case/{case.case_id}/report/v2", "allowed"),
    ]
    assert records[0]["detail"]["version"] == 2
    assert records[2]["detail"]["formats"] == ["csv", "html", "json", "pdf", "vtt"]
    assert json.loads((out / "report.schema.json").read_text())["title"]


def test_errors_are_one_line_and_recorded(case: Case, tmp_path: Path) -> None:
    one_line_error(
        aima(case.env, "report", "show", case.case_id),
        f"case {case.case_id} has no report yet; build one with `aima report build {case.case_id}`",
    )
    one_line_error(
        aima(case.env, "report", "build", case.case_id),
        f"case {case.case_id} has no files yet; nothing to report on",
    )
    one_line_error(aima(case.env, "report", "list", "no-such-case"), "no case no-such-case")
    case.store_report()
    one_line_error(
        aima(case.env, "report", "export", case.case_id, "--version", "3", "--format", "json"),
        f"case {case.case_id} has no report version 3",
    )
    one_line_error(
        aima(case.env, "report", "export", case.case_id, "--format", "json", "--all", "-o", str(tmp_path)),
        "give either --format FORMAT or --all",
    )
    records = case.records()
    failed = [(r["action"], r["outcome"], r["detail"]["error"]) for r in records if r["outcome"] == "failed"]
    assert failed == [
        ("case.read", "failed", "not-found"),
        ("case.update", "failed", "no-media"),
        ("case.export", "failed", "not-found"),
    ]
