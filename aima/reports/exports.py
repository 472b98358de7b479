"""Every export of a case report: to a folder (`write_all`) or one format in memory (`render`).

| file | format | media type |
| --- | --- | --- |
| ``report.json`` | ``json``: the report as stored | ``application/json`` |
| ``report.schema.json`` | its JSON Schema, as published in ``docs/schemas/`` | ``application/schema+json`` |
| ``timeline.csv``, ``indicators.csv``, ``persons.csv`` | ``csv-timeline``, ... | ``text/csv`` |
| ``report.html`` | ``html``: one self-contained page | ``text/html`` |
| ``report.pdf`` | ``pdf``: the same page, laid out for print | ``application/pdf`` |
| ``transcripts/F1-interview.vtt`` | WebVTT per transcript (`aima.subtitles`) | ``text/vtt`` |

Images for the HTML and the PDF come from the caller (`aima.reports.html.ImageSource`): the caller
returns blurred bytes for sensitive files, the page marks them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Literal, get_args

from aima.reports.html import ImageSource, render_html
from aima.reports.model import CaseReport
from aima.reports.pdf import html_to_pdf, report_title
from aima.reports.schema import schema_text, to_json
from aima.reports.tables import indicators_csv, persons_csv, timeline_csv
from aima.subtitles import to_webvtt
from aima.transcripts import Transcript

ReportFormat = Literal["json", "csv-timeline", "csv-indicators", "csv-persons", "html", "pdf"]
FORMATS: tuple[ReportFormat, ...] = get_args(ReportFormat)
MEDIA_TYPES: dict[ReportFormat, str] = {
    "json": "application/json",
    "csv-timeline": "text/csv; charset=utf-8; header=present",
    "csv-indicators": "text/csv; charset=utf-8; header=present",
    "csv-persons": "text/csv; charset=utf-8; header=present",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
"""The content type of each format."""
FILE_NAMES: dict[ReportFormat, str] = {
    "json": "report.json",
    "csv-timeline": "timeline.csv",
    "csv-indicators": "indicators.csv",
    "csv-persons": "persons.csv",
    "html": "report.html",
    "pdf": "report.pdf",
}
"""The name of each format's file in an export folder."""
SCHEMA_FILE = "report.schema.json"
TRANSCRIPTS = "transcripts"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def render(
    report: CaseReport,
    fmt: ReportFormat,
    *,
    thumbnail: ImageSource | None = None,
    crop: ImageSource | None = None,
) -> tuple[bytes, str, str]:
    """One format in memory: (body, media type, download file name)."""
    if fmt == "json":
        body = to_json(report).encode()
    elif fmt == "csv-timeline":
        body = timeline_csv(report).encode()
    elif fmt == "csv-indicators":
        body = indicators_csv(report).encode()
    elif fmt == "csv-persons":
        body = persons_csv(report).encode()
    elif fmt == "html":
        body = render_html(report, thumbnail=thumbnail, crop=crop).encode()
    elif fmt == "pdf":
        body = html_to_pdf(render_html(report, thumbnail=thumbnail, crop=crop), title=report_title(report))
    else:
        raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(FORMATS)}")
    return body, MEDIA_TYPES[fmt], download_name(report, fmt)


def download_name(report: CaseReport, fmt: ReportFormat) -> str:
    """A file name for one format: the case name (made safe), the version and the table,
    e.g. ``Case_1-report-v3-timeline.csv``."""
    case = _safe(report.case_name) or _safe(report.case_id) or "case"
    stem, dot, extension = FILE_NAMES[fmt].rpartition(".")
    table = "" if stem == "report" else f"-{stem}"
    return f"{case}-report-v{report.version}{table}{dot}{extension}"


def transcript_file_name(report: CaseReport, transcript: Transcript) -> str:
    """``F1-interview.vtt``: the report's file id and the file name's stem (made safe); the media
    id stands in for a file the report does not list."""
    file = next((f for f in report.files if f.media_id == transcript.media_id), None)
    if file is None:
        return f"{_safe(transcript.media_id) or 'media'}.vtt"
    stem = _safe(PurePath(file.filename.replace("\\", "/")).stem) if file.filename else ""
    return f"{file.id}-{stem}.vtt" if stem else f"{file.id}.vtt"


def write_all(
    report: CaseReport,
    out_dir: Path,
    *,
    transcripts: Mapping[str, Transcript] | None = None,
    speaker_names: Mapping[str, str] | None = None,
    thumbnail: ImageSource | None = None,
    crop: ImageSource | None = None,
) -> list[Path]:
    """Write every export into ``out_dir`` (created if missing); the paths written, in order.

    ``transcripts`` maps a media id to the transcript version to export as WebVTT (a transcript that
    did not complete is left out); ``speaker_names`` maps a case speaker id to its display name.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    html = render_html(report, thumbnail=thumbnail, crop=crop)
    texts: list[tuple[str, str]] = [
        (FILE_NAMES["json"], to_json(report)),
        (SCHEMA_FILE, schema_text()),
        (FILE_NAMES["csv-timeline"], timeline_csv(report)),
        (FILE_NAMES["csv-indicators"], indicators_csv(report)),
        (FILE_NAMES["csv-persons"], persons_csv(report)),
        (FILE_NAMES["html"], html),
    ]
    written = []
    for name, text in texts:
        written.append(_write(out_dir / name, text.encode()))
    written.append(_write(out_dir / FILE_NAMES["pdf"], html_to_pdf(html, title=report_title(report))))
    order = {file.media_id: index for index, file in enumerate(report.files)}
    chosen = transcripts or {}
    for media_id in sorted(chosen, key=lambda key: (order.get(key, len(order)), key)):
        transcript = chosen[media_id]
        if transcript.status != "completed":
            continue
        folder = out_dir / TRANSCRIPTS
        folder.mkdir(exist_ok=True)
        vtt = to_webvtt(transcript, speaker_names)
        written.append(_write(folder / transcript_file_name(report, transcript), vtt.encode()))
    return written


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_")[:80]


def _write(path: Path, body: bytes) -> Path:
    path.write_bytes(body)
    return path
