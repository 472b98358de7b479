"""CSV exports of a case report: the timeline, the indicators and the persons.

Each table has a fixed column order (``*_COLUMNS``), a header row, and is written by the csv module
as RFC 4180 asks (comma, double quotes where needed, CRLF line ends). A list in one cell is joined
with ``"; "``. Evidence is written compactly, one reference per item, as ``F1@12.5-14#frame``: the
report's file id (the media id when the report does not list the file), the time range in seconds
within the file, and the frame, where the reference has them.

A cell that a spreadsheet would take for a formula (beginning with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return) gets a leading apostrophe, so transcript text cannot run as a formula
when the table is opened (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence

from aima.domain import EvidenceRef, ModelRef
from aima.reports.model import CaseReport

TIMELINE_COLUMNS = (
    "id",
    "kind",
    "file",
    "media_id",
    "start_s",
    "end_s",
    "at",
    "text",
    "language",
    "translation",
    "speaker_id",
    "speaker",
    "persons",
    "indicator",
    "confidence",
    "evidence",
)
INDICATOR_COLUMNS = (
    "id",
    "category",
    "label",
    "confidence",
    "step",
    "model",
    "file",
    "media_id",
    "start_s",
    "persons",
    "review",
    "review_reason",
    "reviewer",
    "decided_at",
    "indicator_key",
    "finding_id",
    "evidence",
)
PERSON_COLUMNS = (
    "id",
    "person_id",
    "name",
    "named_by_reviewer",
    "appearances",
    "files",
    "voice",
    "voice_name",
    "voice_basis",
    "said",
    "postures",
    "co_occurrences",
    "indicators",
    "evidence",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | bool | None


def timeline_csv(report: CaseReport) -> str:
    """The timeline, one row per entry in timeline order."""
    name = _file_ids(report)
    rows = (
        {
            "id": entry.id,
            "kind": entry.kind,
            "file": entry.file,
            "media_id": entry.media_id,
            "start_s": entry.start_s,
            "end_s": entry.end_s,
            "at": entry.at.isoformat() if entry.at else None,
            "text": entry.text,
            "language": entry.language,
            "translation": entry.translation,
            "speaker_id": entry.speaker_id,
            "speaker": entry.speaker,
            "persons": _join(entry.person_ids),
            "indicator": entry.indicator_id,
            "confidence": entry.confidence,
            "evidence": evidence_text(entry.evidence, name),
        }
        for entry in report.timeline
    )
    return _table(TIMELINE_COLUMNS, rows)


def indicators_csv(report: CaseReport) -> str:
    """The indicators for review, with the reviewer's decision."""
    name = _file_ids(report)
    rows = (
        {
            "id": item.id,
            "category": item.category,
            "label": item.label,
            "confidence": item.confidence,
            "step": item.step,
            "model": model_text(item.model),
            "file": item.file,
            "media_id": item.media_id,
            "start_s": item.start_s,
            "persons": _join(item.person_ids),
            "review": item.review.decision,
            "review_reason": item.review.reason,
            "reviewer": item.review.reviewer,
            "decided_at": item.review.decided_at.isoformat() if item.review.decided_at else None,
            "indicator_key": item.indicator_key,
            "finding_id": item.finding_id,
            "evidence": evidence_text(item.evidence, name),
        }
        for item in report.indicators
    )
    return _table(INDICATOR_COLUMNS, rows)


def persons_csv(report: CaseReport) -> str:
    """One row per person: how often and where they are seen, their voice, and what cites them."""
    name = _file_ids(report)
    rows = (
        {
            "id": person.id,
            "person_id": person.person_id,
            "name": person.name,
            "named_by_reviewer": person.named_by_reviewer,
            "appearances": len(person.appearances),
            "files": _join(dict.fromkeys(a.file for a in person.appearances)),
            "voice": person.voice,
            "voice_name": person.voice_name,
            "voice_basis": person.voice_basis,
            "said": _join(person.said),
            "postures": _join(person.postures),
            "co_occurrences": _join(f"{c.person} in {' '.join(c.files)}" for c in person.co_occurrences),
            "indicators": _join(person.indicators),
            "evidence": evidence_text(person.evidence, name),
        }
        for person in report.persons
    )
    return _table(PERSON_COLUMNS, rows)


TABLES: dict[str, Callable[[CaseReport], str]] = {
    "timeline": timeline_csv,
    "indicators": indicators_csv,
    "persons": persons_csv,
}
"""Table name (``timeline.csv``, ...) -> its renderer."""


def evidence_text(evidence: Iterable[EvidenceRef], file_ids: Mapping[str, str] | None = None) -> str:
    """Evidence references as ``F1@12.5-14#frame``, joined by ``"; "``."""
    return _join(_reference(ref, file_ids or {}) for ref in evidence)


def model_text(model: ModelRef) -> str:
    """``name version (backend)``."""
    return f"{model.name} {model.version} ({model.backend})"


def guard(cell: str) -> str:
    """The cell with a leading apostrophe if a spreadsheet would read it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def number(value: float) -> str:
    """A number with at most three decimals and no trailing zeros: ``12.5``, ``3``, ``0.875``."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _reference(ref: EvidenceRef, file_ids: Mapping[str, str]) -> str:
    text = file_ids.get(ref.media_id, ref.media_id)
    if ref.start_s is not None:
        text += "@" + number(ref.start_s)
        if ref.end_s is not None and ref.end_s != ref.start_s:
            text += "-" + number(ref.end_s)
    if ref.frame_id:
        text += "#" + ref.frame_id
    return text


def _file_ids(report: CaseReport) -> dict[str, str]:
    return {file.media_id: file.id for file in report.files}


def _join(items: Iterable[str]) -> str:
    return "; ".join(items)


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return number(value)
    return guard(str(value))


def _table(columns: Sequence[str], rows: Iterable[Mapping[str, Cell]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[column]) for column in columns])
    return out.getvalue()
