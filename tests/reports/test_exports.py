"""Every export to a folder, one format in memory, and the WebVTT file per transcript."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import webvtt

from aima.reports import exports
from aima.reports.exports import FORMATS, MEDIA_TYPES, download_name, render, transcript_file_name, write_all
from aima.reports.model import CaseReport
from aima.reports.schema import to_json
from tests.reports import sample
from tests.reports.conftest import Exported


def test_write_all_writes_every_format_and_a_subtitle_file_per_transcript(exported: Exported) -> None:
    names = [path.relative_to(exported.folder).as_posix() for path in exported.paths]
    assert names == [
        "report.json",
        "report.schema.json",
        "timeline.csv",
        "indicators.csv",
        "persons.csv",
        "report.html",
        "report.pdf",
        "transcripts/F1-harbour_interview.vtt",
    ]
    assert all(path.is_file() and path.stat().st_size > 0 for path in exported.paths)
    assert sorted(
        p.relative_to(exported.folder).as_posix() for p in exported.folder.rglob("*") if p.is_file()
    ) == sorted(names)


def test_the_subtitles_name_speakers_and_escape_markup(exported: Exported) -> None:
    path = exported.folder / "transcripts" / "F1-harbour_interview.vtt"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT")
    assert "<v Anna Meier>" in text
    assert "<v Speaker 2>" in text
    assert "&lt;script&gt;" in text
    assert "<script>" not in text
    captions = webvtt.read(str(path))
    assert [caption.start for caption in captions][:1] == ["00:00:03.000"]
    assert any(sample.GERMAN_EN in caption.raw_text for caption in captions)


def test_transcripts_that_did_not_complete_are_left_out_and_unknown_files_use_the_media_id(
    report: CaseReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "html_to_pdf", lambda html, title=None: b"%PDF-1.7 stand-in")
    done = sample.transcript()
    failed = done.model_copy(update={"media_id": sample.VOICEMAIL, "status": "failed", "segments": []})
    stranger = done.model_copy(update={"media_id": "m-not/in report"})
    paths = write_all(
        report,
        tmp_path,
        transcripts={sample.VOICEMAIL: failed, "m-not/in report": stranger, sample.VIDEO: done},
    )
    vtts = [path.name for path in paths if path.suffix == ".vtt"]
    assert vtts == ["F1-harbour_interview.vtt", "m-not_in_report.vtt"]
    assert transcript_file_name(report, failed) == "F3-voicemail_0412.vtt"


def test_each_format_renders_in_memory_with_its_type_and_name(report: CaseReport) -> None:
    bodies = {}
    for fmt in FORMATS:
        if fmt == "pdf":
            continue  # the PDF is rendered by the folder export and checked in test_render.py
        body, media_type, filename = render(report, fmt, thumbnail=sample.thumbnail, crop=sample.crop)
        assert media_type == MEDIA_TYPES[fmt]
        assert filename == download_name(report, fmt)
        bodies[fmt] = body
    assert bodies["json"].decode() == to_json(report)
    assert json.loads(bodies["json"])["case_id"] == report.case_id
    assert bodies["csv-timeline"].startswith(b"id,kind,file,")
    assert bodies["csv-indicators"].startswith(b"id,category,label,")
    assert bodies["csv-persons"].startswith(b"id,person_id,name,")
    assert bodies["html"].startswith(b"<!DOCTYPE html>")
    assert download_name(report, "csv-timeline") == "Harbour_Street_12_May-report-v3-timeline.csv"
    assert download_name(report, "pdf") == "Harbour_Street_12_May-report-v3.pdf"
    assert download_name(report.model_copy(update={"case_name": "///"}), "json") == "case-0001-report-v3.json"
    with pytest.raises(ValueError, match="unknown report format"):
        render(report, "docx")  # type: ignore[arg-type]


def test_the_pdf_renders_in_memory_with_its_title(report: CaseReport, tmp_path: Path) -> None:
    body, media_type, filename = render(report, "pdf")
    assert body.startswith(b"%PDF-")
    assert media_type == "application/pdf"
    assert filename.endswith(".pdf")
    (tmp_path / filename).write_bytes(body)
    info = subprocess.run(["pdfinfo", str(tmp_path / filename)], capture_output=True, text=True, check=True)
    assert "Case report: Harbour Street, 12 May (version 3)" in info.stdout
