"""The case report as one self-contained HTML page (and, through `aima.reports.pdf`, as a PDF).

Self-contained: the CSS is inline, images are ``data:`` URIs, and a Content-Security-Policy forbids
the page to fetch anything, so it opens offline and leaks nothing when opened. Every text of the
report is escaped (Jinja2 autoescape), so a transcript that contains markup shows it as text.

Sections, in order: the header (case, version, when made, partial or not, the analyst's context), a
plain-language banner (indicators for human review, never verdicts), contents, the narrative (each
sentence with links to what it cites), files (hash, what each step did and why, thumbnail), the
timeline, persons (best crop, appearances, voice, what it said, postures, who else appears,
indicators), speakers, indicators (category, label, confidence, model, evidence, the reviewer's
decision), gaps, and the chain of custody (hashes, models, audit chain head, signature key).

Every report id (``F1``, ``T1``, ``P1``, ``I1``, ``G1``) is the HTML id of its entry, and every
citation of one is a link to it; an id the report does not have is shown as plain text. Evidence
is shown as file, time range and frame.

Images come from the caller: ``thumbnail(media_id)`` and ``crop(object_key)`` return the image bytes
(PNG, JPEG, GIF or WebP; ``None`` when there is none). For a file marked sensitive the caller returns
the blurred image; the page says so beside it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from aima.domain import EvidenceRef
from aima.reports.model import CaseReport, PersonSummary, ReportFile

ImageSource = Callable[[str], bytes | None]
"""A key (a media id, an object key) -> image bytes, or None."""

BANNER = "Indicators for human review: what models saw, not what a person is or did."
TEMPLATES = Path(__file__).parent / "templates"
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def render_html(
    report: CaseReport,
    *,
    thumbnail: ImageSource | None = None,
    crop: ImageSource | None = None,
) -> str:
    """The report as a self-contained HTML page."""
    files = {file.media_id: file for file in report.files}
    thumbnails = {
        file.id: uri for file in report.files if (uri := data_uri(_image(thumbnail, file.media_id)))
    }
    crops = {
        person.id: uri
        for person in report.persons
        if person.best_crop is not None
        and person.best_crop.crop_key
        and (uri := data_uri(_image(crop, person.best_crop.crop_key)))
    }
    view = _View(report, files)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            banner=BANNER,
            thumbnails=thumbnails,
            crops=crops,
            sensitive={file.id for file in report.files if file.sensitive},
            crop_sensitive={person.id for person in report.persons if view.crop_sensitive(person)},
            timeline_text={entry.id: entry.text for entry in report.timeline},
            indicator_label={item.id: item.label for item in report.indicators},
            names=view.names,
            cite=view.cite,
            evidence=view.evidence,
            clock=clock,
            span=span,
            when=when,
            size=size,
            percent=percent,
        )
    )


def data_uri(image: bytes | None) -> str | None:
    """A ``data:`` URI for PNG, JPEG, GIF or WebP bytes; None for anything else."""
    if not image:
        return None
    media_type = next((kind for magic, kind in _SIGNATURES if image.startswith(magic)), None)
    if media_type is None and image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        media_type = "image/webp"
    if media_type is None:
        return None
    return f"data:{media_type};base64,{base64.b64encode(image).decode('ascii')}"


def clock(seconds: float | None) -> str:
    """``M:SS.s`` (``H:MM:SS.s`` from an hour on); empty for None."""
    if seconds is None:
        return ""
    tenths = round(seconds * 10)
    hours, tenths = divmod(tenths, 36_000)
    minutes, tenths = divmod(tenths, 600)
    secs, tenths = divmod(tenths, 10)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}.{tenths}"
    return f"{minutes}:{secs:02d}.{tenths}"


def span(start: float | None, end: float | None) -> str:
    """A time range within a file, ``0:12.0`` to ``0:14.5`` joined by an en dash; one time when
    both are equal."""
    if start is None:
        return clock(end)
    if end is None or round(end, 1) == round(start, 1):
        return clock(start)
    return f"{clock(start)}\u2013{clock(end)}"


def when(moment: datetime | None) -> str:
    """A time of day in UTC: ``2024-05-01 10:00:00 UTC``."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def size(count: int) -> str:
    """Bytes for a reader: ``1.2 MB (1,234,567 bytes)``."""
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{count:,} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({count:,} bytes)"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def percent(confidence: float | None) -> str:
    """A confidence as a whole percentage."""
    return "" if confidence is None else f"{round(confidence * 100)} %"


class _View:
    """Links and evidence for the template."""

    def __init__(self, report: CaseReport, files: dict[str, ReportFile]) -> None:
        self.ids = report.ids()
        self.files = files
        self.names = {person.id: person.name for person in report.persons}

    def cite(self, target: str | None, label: str | None = None) -> Markup:
        """A link to a report id, or the id as text where the report has no such entry."""
        if not target:
            return Markup("")
        text = label if label is not None else target
        if target in self.ids:
            return Markup('<a class="cite" href="#{0}">{1}</a>').format(target, text)
        return Markup('<span class="cite missing">{0}</span>').format(text)

    def evidence(self, refs: Iterable[EvidenceRef]) -> list[Markup]:
        """Each reference as file (linked), time range, frame and segment."""
        shown = []
        for ref in refs:
            file = self.files.get(ref.media_id)
            parts = [
                Markup("{0} {1}").format(self.cite(file.id), file.filename or "")
                if file is not None
                else Markup('<span class="mono">{0}</span>').format(ref.media_id)
            ]
            if ref.start_s is not None or ref.end_s is not None:
                parts.append(Markup("at {0}").format(span(ref.start_s, ref.end_s)))
            if ref.frame_id:
                parts.append(Markup('frame <span class="mono">{0}</span>').format(ref.frame_id))
            if ref.segment_id:
                parts.append(Markup('segment <span class="mono">{0}</span>').format(ref.segment_id))
            shown.append(Markup(", ").join(parts))
        return shown

    def crop_sensitive(self, person: PersonSummary) -> bool:
        crop = person.best_crop
        file = self.files.get(crop.media_id) if crop is not None else None
        return file is not None and file.sensitive


def _image(source: ImageSource | None, key: str) -> bytes | None:
    return source(key) if source is not None else None


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
