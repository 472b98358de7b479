"""The case report as a PDF, laid out by WeasyPrint from the same HTML as the HTML export.

The page's print CSS sets A4 pages with the report version and page numbers at the foot. WeasyPrint
may fetch nothing but ``data:`` URIs (the report's images), so rendering a report reaches no network
and no file. WeasyPrint needs Pango from the system (Debian: ``libpango-1.0-0``,
``libpangoft2-1.0-0``; `scripts/ensure-tools.sh` installs them).
"""

from __future__ import annotations

from typing import cast

from aima.reports.model import CaseReport


def html_to_pdf(html: str, *, title: str | None = None) -> bytes:
    """A PDF of a self-contained HTML page (WeasyPrint is imported on first use)."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"}, timeout=5)
    document = HTML(string=html, base_url=None, url_fetcher=fetcher, media_type="print").render()
    if title:
        document.metadata.title = title
    return cast(bytes, document.write_pdf())


def report_title(report: CaseReport) -> str:
    """The PDF's title: ``Case report: NAME (version N)``."""
    return f"Case report: {report.case_name} (version {report.version})"
